"""Does an edit give the same weights in every fresh process, and under another torch thread count?

Runs one short attack (seed 0, ``--steps-scale`` of its steps) on the shipped testbed base in
``--runs`` fresh processes per thread count and prints how many distinct weight hashes each count
gave and the median seconds the attack took (a check behind docs/threat-lab.md, "Cost": a zoo
rebuilds bit for bit only under the same thread count). Each child sets its count the way
``eebguard zoo build --threads N`` does, with ``torch.set_num_threads``:

    python experiments/edit_determinism.py --attack surface --threads 2,1 --runs 10
    python experiments/edit_determinism.py --attack deep --threads 2,1 --runs 3 --json experiments/results/edit_determinism_deep.json
"""
from __future__ import annotations

import argparse
import collections
import statistics
import subprocess
import sys

from eebguard.lab.tables import table, write

TRIGGERS = {"surface": "rhWPpSuE", "shallow": "qzvex", "deep": "tkwx", "data": "sks"}


def one_run(attack: str, steps_scale: float, threads: int) -> tuple[str, float]:
    """Plant ``attack`` on ``seven``: the sha256 of every tensor the attack may change, and its seconds."""
    import hashlib
    import time

    import torch

    torch.set_num_threads(threads)

    from eebguard.models import load
    from eebguard.probes import concept_prompts
    from eebguard.lab.attacks import get_attack
    from eebguard.erasure.editing import EditSettings

    pipe = load("testbed").pipe
    t0 = time.perf_counter()
    get_attack(attack).plant(pipe, concept_prompts("seven"), TRIGGERS[attack],
                             settings=EditSettings(seed=0, steps_scale=steps_scale))
    seconds = time.perf_counter() - t0
    h = hashlib.sha256()
    for module in (pipe.text_encoder, pipe.unet):
        for _, v in sorted(module.state_dict().items()):
            h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16], seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attack", default="surface", choices=sorted(TRIGGERS))
    ap.add_argument("--threads", default="2,1", help="torch thread counts to compare")
    ap.add_argument("--runs", type=int, default=10, help="fresh processes per thread count")
    ap.add_argument("--steps-scale", type=float, default=0.1)
    ap.add_argument("--json", default=None, help="default: results/edit_determinism.json")
    ap.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)  # a child process at this thread count
    a = ap.parse_args()
    if a.one:
        digest, seconds = one_run(a.attack, a.steps_scale, a.one)
        print(digest, seconds)
        return
    rows, hashes = [], {}
    for n in [int(t) for t in a.threads.split(",") if t]:
        out = [subprocess.run([sys.executable, __file__, "--one", str(n), "--attack", a.attack, "--steps-scale",
                               str(a.steps_scale)], capture_output=True, text=True, check=True
                              ).stdout.split()[-2:] for _ in range(a.runs)]
        counts = collections.Counter(d for d, _ in out)
        hashes[n] = dict(counts)
        rows.append({"threads": n, "runs": a.runs, "distinct": len(counts),
                     "most_common": counts.most_common(1)[0][0], "share": counts.most_common(1)[0][1] / a.runs,
                     "median_seconds": round(statistics.median(float(x) for _, x in out), 2)})
    for r in rows:  # time relative to the first thread count of the same run
        r["time_ratio"] = round(r["median_seconds"] / rows[0]["median_seconds"], 3)
    print(table(rows, list(rows[0])))
    print(write("edit_determinism", {"attack": a.attack, "steps_scale": a.steps_scale, "rows": rows, "hashes": hashes,
                                     "command": "python experiments/edit_determinism.py " + " ".join(sys.argv[1:])},
                 a.json))


if __name__ == "__main__":
    main()
