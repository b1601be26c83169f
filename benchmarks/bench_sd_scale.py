"""The scan at real Stable Diffusion shape: per-scanner time, peak memory and the vocabulary screen's
throughput on random-weight SD-1.5, SD-2.1 and reduced-SDXL pipelines built from their published
configs (``eebguard.lab.testbed.sd_shapes``; no download).

    python benchmarks/bench_sd_scale.py --smoke                    # CPU: every scanner end to end at minimal
                                                                   # budgets, a 64-token vocabulary slice
    python benchmarks/bench_sd_scale.py --device cuda --dtype float16   # default budgets, full vocabulary

Each shape is scanned as a hub moderator would scan a fine-tune of a known base: the random base is the
reference, the suspect a small random change of it, the claimed erasure UCE replayed as the
counterfactual, a random CLIP judge (ViT-L/14's shape outside smoke mode). Random weights say nothing
about concepts: the numbers are costs, and the checks are that every scanner ran or was skipped by
name with its reason, and that every feature is finite. Prints a table and writes
benchmarks/results/sd_scale[_smoke].json. Exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

from eebguard.lab.tables import table, write

CONCEPT = "cat"


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def check(res, shape: str) -> list[str]:
    """What a scan of ``shape`` must return: every registered scanner named with its outcome (never an
    error), finite features, and on SD 1.x/2.x shapes the U-Net-side scanners run."""
    from eebguard.scanners import SCANNERS

    problems = []
    status = res.evidence.get("scanners", {})
    for name in SCANNERS.names():
        st = status.get(name)
        if st is None:
            problems.append(f"{name}: no outcome recorded")
        elif st["status"] == "error":
            problems.append(f"{name}: {st.get('reason')}")
        elif st["status"] == "skipped" and not st.get("reason"):
            problems.append(f"{name}: skipped without a reason")
    bad = [k for k, v in res.features.items() if not math.isfinite(v)]
    if bad:
        problems.append(f"non-finite features: {bad[:5]}")
    if shape == "sdxl-reduced":
        ran = [n for n, st in status.items() if st["status"] == "ok" and SCANNERS.get(n).conditions_unet]
        if ran:
            problems.append(f"U-Net-side scanners claim to have run on an SDXL U-Net: {ran}")
        if res.verdict != "unknown":
            problems.append(f"verdict {res.verdict!r} on a shape the scan cannot condition")
    else:
        for name in ("text_embedding", "cross_attention_kv", "soft_trigger", "hard_trigger", "reachability"):
            if status.get(name, {}).get("status") != "ok":
                problems.append(f"{name} did not run on {shape}: {status.get(name)}")
        if res.counterfactual.get("kind") != "replay":
            problems.append(f"counterfactual {res.counterfactual} (the claimed UCE was not replayed)")
    return problems


def vocab_throughput(ref, settings, device) -> float:
    """Tokens per second of one vocabulary screen (the reference's slot/EOS rows in the first template)."""
    import torch

    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext
    from eebguard.scanners.vocab import vocab_rows, vocabulary

    ctx = ScanContext(ref, CONCEPT, concept_prompts(CONCEPT), reference=ref, settings=settings)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    vocab_rows(ctx, "reference")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return len(vocabulary(ctx)) / (time.perf_counter() - t0)


def run_shape(shape: str, a, judge_dir: str) -> dict:
    import torch

    from eebguard.api import Scanner
    from eebguard.judges.clip import ClipJudge
    from eebguard.scanners.settings import settings_for
    from eebguard.lab.testbed.sd_shapes import build_sd_pipeline, fine_tune_of

    dtype = getattr(torch, a.dtype)
    t0 = time.perf_counter()
    ref = build_sd_pipeline(shape, seed=0, smoke=a.smoke)
    sus = fine_tune_of(ref, seed=1)
    if (a.device, dtype) != ("cpu", torch.float32):
        ref.to(a.device, dtype)
        sus.to(a.device, dtype)
    build_s = time.perf_counter() - t0
    settings = settings_for("smoke" if a.smoke else "default", device=a.device, dtype=dtype)
    judge = ClipJudge(judge_dir, [CONCEPT, "dog"])
    if a.device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    tps = vocab_throughput(ref, settings, a.device)
    scanner = Scanner(ref, judge=judge, settings=settings, device=a.device, dtype=dtype,
                      verify_images=2 if a.smoke else None)
    t0 = time.perf_counter()
    t_start = time.perf_counter()

    def progress(stage):
        print(f"  {shape}: {stage} at {time.perf_counter() - t_start:.0f} s", flush=True)

    res = scanner.scan(sus, CONCEPT, claimed_erasure="uce", progress=progress)
    total = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if a.device.startswith("cuda") else None
    status = res.evidence.get("scanners", {})
    problems = check(res, shape)
    row = {"shape": shape, "build_s": round(build_s, 1), "scan_s": round(total, 1),
           "counterfactual_s": res.timings.get("counterfactual"), "demonstration_s": res.timings.get("demonstration"),
           "vocab_tokens_per_s": round(tps, 1), "peak_gpu_gib": None if peak is None else round(peak, 2),
           "peak_rss_gib": round(peak_rss_gib(), 2), "verdict": res.verdict, "features": len(res.features),
           "scanners": {n: {"status": st["status"], "seconds": st.get("seconds"), **({"reason": st["reason"]} if st.get("reason") else {})}
                        for n, st in status.items()},
           "warnings": res.warnings, "problems": problems}
    del ref, sus, scanner
    if a.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return row


def main(argv=None) -> int:
    import torch

    from eebguard.lab.testbed.sd_shapes import SHAPES, random_clip_judge_folder

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU-sized: minimal budgets, small latents, a vocabulary slice")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        judge_dir = random_clip_judge_folder(Path(tmp) / "clip", full=not a.smoke)
        for shape in a.shapes.split(","):
            rows.append(run_shape(shape, a, judge_dir))
            print(f"{shape}: scan {rows[-1]['scan_s']} s, {len(rows[-1]['problems'])} problems", flush=True)
    names = sorted({n for r in rows for n in r["scanners"]})
    print(table(rows, ["shape", "build_s", "scan_s", "counterfactual_s", "demonstration_s", "vocab_tokens_per_s",
                       "peak_gpu_gib", "peak_rss_gib", "verdict"]))
    per = [{"scanner": n, **{r["shape"]: (f"{st['status']} {st.get('seconds') or 0:.1f}s" if (st := r["scanners"].get(n)) else "-")
                             for r in rows}} for n in names]
    print(table(per, ["scanner", *[r["shape"] for r in rows]]))
    for r in rows:
        for p in r["problems"]:
            print(f"PROBLEM {r['shape']}: {p}")
    name = "sd_scale_smoke" if a.smoke else "sd_scale"
    print(write(name, {"smoke": a.smoke, "device": a.device, "dtype": a.dtype,
                       "gpu": torch.cuda.get_device_name() if a.device.startswith("cuda") else None, "shapes": rows,
                       "command": "python benchmarks/bench_sd_scale.py " + " ".join(sys.argv[1:] if argv is None else argv)},
                a.json))
    return 1 if any(r["problems"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
