"""Does an edit give the same weights in every fresh process, and under another torch thread count?

Runs one short attack (seed 0, ``--steps-scale`` of its steps) on the shipped testbed base in
``--runs`` fresh processes per thread count and prints how many distinct weight hashes each count
gave (a check behind docs/threat-lab.md, "Cost": a zoo rebuilds bit for bit only under the same
thread count):

    python benchmarks/edit_determinism.py --attack surface --threads 2,1 --runs 10
"""
from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write  # noqa: E402

TRIGGERS = {"surface": "rhWPpSuE", "shallow": "qzvex", "deep": "tkwx", "data": "sks"}


def one_run(attack: str, steps_scale: float) -> str:
    """Plant ``attack`` on ``seven`` and return the sha256 of every tensor the attack may change."""
    import hashlib

    from eebguard.models import load
    from eebguard.probes import concept_prompts
    from eebguard.threats.attacks import get_attack
    from eebguard.threats.common import EditSettings

    pipe = load("testbed").pipe
    get_attack(attack).plant(pipe, concept_prompts("seven"), TRIGGERS[attack],
                             settings=EditSettings(seed=0, steps_scale=steps_scale))
    h = hashlib.sha256()
    for module in (pipe.text_encoder, pipe.unet):
        for _, v in sorted(module.state_dict().items()):
            h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attack", default="surface", choices=sorted(TRIGGERS))
    ap.add_argument("--threads", default="2,1", help="torch thread counts to compare")
    ap.add_argument("--runs", type=int, default=10, help="fresh processes per thread count")
    ap.add_argument("--steps-scale", type=float, default=0.1)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child process
    a = ap.parse_args()
    if a.one:
        print(one_run(a.attack, a.steps_scale))
        return
    rows, hashes = [], {}
    for n in [int(t) for t in a.threads.split(",") if t]:
        env = {**os.environ, "OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}
        got = [subprocess.run([sys.executable, __file__, "--one", "--attack", a.attack, "--steps-scale",
                               str(a.steps_scale)], env=env, capture_output=True, text=True, check=True
                              ).stdout.split()[-1] for _ in range(a.runs)]
        counts = collections.Counter(got)
        hashes[n] = dict(counts)
        rows.append({"threads": n, "runs": a.runs, "distinct": len(counts),
                     "most_common": counts.most_common(1)[0][0], "share": counts.most_common(1)[0][1] / a.runs})
    print(table(rows, list(rows[0])))
    print(write("edit_determinism", {"attack": a.attack, "steps_scale": a.steps_scale, "rows": rows, "hashes": hashes,
                                     "command": "python benchmarks/edit_determinism.py " + " ".join(sys.argv[1:])}))


if __name__ == "__main__":
    main()
