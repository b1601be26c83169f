"""Train the testbed from scratch with the shipped base's recipe (its ``training.json`` config), time
it, evaluate it, and check it is bit-identical to the shipped base (training is deterministic for a seed).

    python benchmarks/bench_testbed_train.py [--samples 20]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eebguard.lab.tables import table, write


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20)
    a = ap.parse_args()
    import json

    import torch
    from safetensors.torch import load_file

    from eebguard.paths import data_path

    shipped = data_path("testbed", "base")
    cfg = json.loads((shipped / "training.json").read_text())["config"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "base"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "eebguard.cli", "testbed", "train", "--out", str(out), "--seed",
                        str(cfg["seed"]), "--steps", str(cfg["steps"]), "--identity-weight", str(cfg["identity_weight"]),
                        "--unknown-words", cfg["unknown_words"], "-q"], check=True)
        wall = time.perf_counter() - t0
        res = json.loads(subprocess.run([sys.executable, "-m", "eebguard.cli", "testbed", "eval", str(out), "--samples",
                                         str(a.samples), "--json"], check=True, capture_output=True, text=True).stdout)
        same = all(
            all(torch.equal(x[k], y[k]) for k in x)
            for x, y in ((load_file(out / c / f), load_file(shipped / c / f))
                         for c, f in (("unet", "diffusion_pytorch_model.safetensors"), ("text_encoder", "model.safetensors")))
        )
        rec = json.loads((out / "training.json").read_text())
    row = {"steps": cfg["steps"], "seed": cfg["seed"], "wall_seconds": round(wall, 1), "train_seconds": rec["train_seconds"],
           "mean_accuracy": res["mean_accuracy"], "min_accuracy": res["min_accuracy"],
           "identical_to_shipped": same}
    print(table([row], list(row)))
    print(write("testbed_train", {"result": row, "per_concept": res["per_concept"]}))


if __name__ == "__main__":
    main()
