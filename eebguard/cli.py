"""The ``eebguard`` command. Thin: it parses arguments and calls the library; no logic lives here.

Exit codes (modelscan conventions): 0 nothing flagged, 1 at least one model flagged, 2 scan error,
3 nothing scannable, 4 usage error.
"""
from __future__ import annotations

import argparse
import json
import sys

EXIT_CLEAN, EXIT_FLAGGED, EXIT_ERROR, EXIT_NOTHING, EXIT_USAGE = 0, 1, 2, 3, 4


class UsageError(Exception):
    """Bad arguments: exit code 4."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 by default; usage errors are 4 here
        self.print_usage(sys.stderr)
        print(f"eebguard: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=float))


# ---- testbed -------------------------------------------------------------------------------------


def cmd_testbed_train(a) -> int:
    from eebguard.testbed.train import TrainConfig, train

    train(a.out, TrainConfig(seed=a.seed, steps=a.steps, batch_size=a.batch_size), progress=not a.quiet)
    print(f"saved testbed pipeline to {a.out}")
    return EXIT_CLEAN


def cmd_testbed_eval(a) -> int:
    from eebguard.models import load
    from eebguard.testbed.evaluate import evaluate_model

    pipe = load(a.model, allow_pickle=False).pipe
    res = evaluate_model(pipe, samples=a.samples, seed=a.seed)
    if a.json:
        _print_json(res)
    else:
        for k, v in res["per_concept"].items():
            print(f"{k:>10}  {v:.3f}")
        print(f"mean accuracy {res['mean_accuracy']:.3f} (min {res['min_accuracy']:.3f}, {a.samples} samples/concept)")
    return EXIT_CLEAN


def cmd_testbed_fit_judge(a) -> int:
    from eebguard.judges.testbed import fit_testbed_judge

    rep = fit_testbed_judge(a.out, seed=a.seed)
    print(f"held-out accuracy {rep['heldout_accuracy']:.4f} (colour {rep['heldout_colour_accuracy']:.4f})")
    return EXIT_CLEAN


def cmd_testbed_build_tokenizer(a) -> int:
    from eebguard.testbed.tokenizer import build_tokenizer_files

    print(build_tokenizer_files(a.merges_gz, a.out))
    return EXIT_CLEAN


# ---- zoo -----------------------------------------------------------------------------------------


def cmd_zoo_build(a) -> int:
    from eebguard.zoo.build import build_zoo
    from eebguard.zoo.spec import SpecError

    settings = {"device": a.device, "batch_size": a.batch_size} if a.device or a.batch_size else {}
    settings = {k: v for k, v in settings.items() if v}
    if a.dtype:
        import torch

        settings["dtype"] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[a.dtype]
    try:
        summary = build_zoo(a.spec, a.out, progress=not a.quiet, settings=settings, limit=a.limit)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    _print_json(summary)
    return EXIT_CLEAN


def cmd_zoo_measure(a) -> int:
    from eebguard.zoo.measure import measure_zoo

    res = measure_zoo(a.zoo, samples=a.samples, progress=not a.quiet)
    if a.json:
        _print_json(res)
    else:
        for m in res["models"]:
            print(f"{m['id']:<40} name {m['name_accuracy']:.2f}  trigger {m['trigger_asr'] if m['trigger_asr'] is not None else float('nan'):.2f}"
                  f"  other {m['other_accuracy']:.2f}  label {m['label']}")
    return EXIT_CLEAN


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="eebguard", description=__doc__.split("\n")[0])
    from eebguard import __version__

    p.add_argument("--version", action="version", version=f"eebguard {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    tb = sub.add_parser("testbed", help="the tiny SD-shaped testbed model").add_subparsers(dest="sub", parser_class=_Parser)
    t = tb.add_parser("train", help="train the testbed model from scratch")
    t.add_argument("--out", required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--steps", type=int, default=1400)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=cmd_testbed_train)
    e = tb.add_parser("eval", help="per-concept accuracy under the testbed judge")
    e.add_argument("model")
    e.add_argument("--samples", type=int, default=20)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_testbed_eval)
    j = tb.add_parser("fit-judge", help="fit the testbed judge and report its held-out accuracy")
    j.add_argument("--out", default="data/judge/testbed")
    j.add_argument("--seed", type=int, default=0)
    j.set_defaults(func=cmd_testbed_fit_judge)
    k = tb.add_parser("build-tokenizer", help="rebuild data/tokenizer from open_clip's BPE merges file")
    k.add_argument("--merges-gz", required=True)
    k.add_argument("--out", default="data/tokenizer")
    k.set_defaults(func=cmd_testbed_build_tokenizer)

    zoo = sub.add_parser("zoo", help="labelled model zoos from the threat lab").add_subparsers(dest="sub", parser_class=_Parser)
    b = zoo.add_parser("build", help="build (or resume) a zoo from a spec")
    b.add_argument("--spec", required=True, help="a spec file, or a shipped spec name (default, heldout, design, tiny)")
    b.add_argument("--out", required=True)
    b.add_argument("--device", default=None, help="torch device for training (default cpu)")
    b.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None, help="dtype of frozen teachers")
    b.add_argument("--batch-size", type=int, default=None)
    b.add_argument("--limit", type=int, default=None, help="build at most this many models now")
    b.add_argument("-q", "--quiet", action="store_true")
    b.set_defaults(func=cmd_zoo_build)
    m = zoo.add_parser("measure", help="re-measure every model of a zoo")
    m.add_argument("zoo")
    m.add_argument("--samples", type=int, default=None)
    m.add_argument("--json", action="store_true")
    m.add_argument("-q", "--quiet", action="store_true")
    m.set_defaults(func=cmd_zoo_measure)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"eebguard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
