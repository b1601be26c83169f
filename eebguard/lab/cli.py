"""The lab's subcommands (``eebguard testbed``, ``zoo``, ``detector``, ``evaluate``), added to the
``eebguard`` command through the ``eebguard.commands`` entry points (pyproject.toml)."""
from __future__ import annotations

import json
from pathlib import Path

from eebguard.cli.base import EXIT_CLEAN, Command, Parser, UsageError, print_json


def cmd_testbed_train(a) -> int:
    from eebguard.lab.testbed.train import TrainConfig, train

    train(a.out, TrainConfig(seed=a.seed, steps=a.steps, batch_size=a.batch_size,
                                  identity_weight=a.identity_weight, unknown_words=a.unknown_words),
          progress=not a.quiet)
    print(f"saved testbed pipeline to {a.out}")
    return EXIT_CLEAN


def cmd_testbed_eval(a) -> int:
    from eebguard.models import load
    from eebguard.lab.testbed.evaluate import evaluate_model

    pipe = load(a.model, allow_pickle=False).pipe
    res = evaluate_model(pipe, samples=a.samples, seed=a.seed)
    if a.json:
        print_json(res)
    else:
        for k, v in res["per_concept"].items():
            print(f"{k:>10}  {v:.3f}")
        print(f"mean accuracy {res['mean_accuracy']:.3f} (min {res['min_accuracy']:.3f}, {a.samples} samples/concept)")
    return EXIT_CLEAN


def cmd_testbed_fit_judge(a) -> int:
    from eebguard.lab.testbed.judge import fit_testbed_judge

    rep = fit_testbed_judge(a.out, seed=a.seed)
    print(f"held-out accuracy {rep['heldout_accuracy']:.4f} (colour {rep['heldout_colour_accuracy']:.4f})")
    return EXIT_CLEAN


def cmd_testbed_build_tokenizer(a) -> int:
    from eebguard.testbed.tokenizer import build_tokenizer_files

    print(build_tokenizer_files(a.merges_gz, a.out))
    return EXIT_CLEAN


# ---- zoo -----------------------------------------------------------------------------------------


def cmd_zoo_build(a) -> int:
    from eebguard.lab.zoo.build import build_zoo
    from eebguard.lab.zoo.spec import SpecError

    settings = {"device": a.device, "batch_size": a.batch_size} if a.device or a.batch_size else {}
    settings = {k: v for k, v in settings.items() if v}
    if a.threads is not None and a.threads < 1:
        raise UsageError("--threads must be at least 1")
    import torch

    if a.dtype:
        settings["dtype"] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[a.dtype]
    threads = torch.get_num_threads()
    try:
        # CPU float results depend on the thread count; each manifest row records the count it was built with
        torch.set_num_threads(a.threads or threads)
        erasures = [e for e in a.erasures.split(",") if e] if a.erasures else None
        summary = build_zoo(a.spec, a.out, progress=not a.quiet, settings=settings, limit=a.limit, erasures=erasures,
                            only=a.only, rebuild=a.rebuild)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    finally:
        torch.set_num_threads(threads)  # in-process callers (tests, notebooks) keep their own setting
    print_json(summary)
    return EXIT_CLEAN


def cmd_zoo_measure(a) -> int:
    from eebguard.lab.zoo.measure import measure_zoo

    res = measure_zoo(a.zoo, samples=a.samples, progress=not a.quiet)
    if a.json:
        print_json(res)
    else:
        for m in res["models"]:
            print(f"{m['id']:<40} name {m['name_accuracy']:.2f}  trigger {m['trigger_asr'] if m['trigger_asr'] is not None else float('nan'):.2f}"
                  f"  other {m['other_accuracy']:.2f}  label {m['label']}")
    return EXIT_CLEAN


def cmd_zoo_report(a) -> int:
    from eebguard.lab.zoo.report import checks, checks_markdown, lab_table, markdown

    for z in a.zoo:
        if not (Path(z) / "manifest.jsonl").is_file():
            raise UsageError(f"{z}: not a zoo (no manifest.jsonl)")
    table = lab_table(a.zoo)
    if a.json:
        print_json({**table, "checks": checks(table)} if a.checks else table)
    else:
        print(markdown(table) + ("\n" + checks_markdown(checks(table)) if a.checks else ""))
    return EXIT_CLEAN


def cmd_zoo_export(a) -> int:
    from eebguard.lab.zoo.export import export_models

    try:
        written = export_models(a.zoo, [i for i in a.ids.split(",") if i], a.out, append=a.append, base=a.base)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"exported {len(written)} models to {a.out}")
    return EXIT_CLEAN


def cmd_zoo_features(a) -> int:
    from eebguard.lab.evaluate.evaluate import load_rows
    from eebguard.lab.evaluate.scanner_quality import feature_auroc, markdown, recovery_rates
    from eebguard.testbed.tokenizer import load_tokenizer

    rows = load_rows(a.zoo, a.reference_free)
    if not rows:
        raise UsageError("no scanned models in the given zoo(s); run `eebguard zoo scan` first"
                         + (" with --reference none" if a.reference_free else ""))
    auroc, rates = feature_auroc(rows, a.positives), recovery_rates(rows, load_tokenizer())
    if a.json:
        print_json({"models": len(rows), "positives": a.positives, "feature_auroc": auroc, "recovery": rates})
    else:
        print(markdown(auroc, rates))
    return EXIT_CLEAN


def cmd_zoo_scan(a) -> int:
    from eebguard.lab.zoo.scan import scan_zoo

    ids = [i.strip() for i in a.ids.split(",") if i.strip()] if a.ids else None
    if a.rescan and not ids:
        raise UsageError("--rescan needs --ids (the models whose rows to replace)")
    try:
        summary = scan_zoo(a.zoo, reference=a.reference, progress=not a.quiet, limit=a.limit, ids=ids, rescan=a.rescan,
                           claim=not a.no_claim, replay_trained=a.replay_trained)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    print_json(summary)
    return EXIT_CLEAN


# ---- detector and evaluation ---------------------------------------------------------------------


def _feature_list(value: str | None) -> list[str]:
    from eebguard.detect.estimator import (DEFAULT_FEATURES, REPLAY_FEATURES, reference_features,
                                           reference_free_features, scan_features)
    from eebguard.scanners import feature_names

    if value in (None, "default"):
        return list(DEFAULT_FEATURES)
    if value == "reference-free":
        return reference_free_features()
    if value == "replay":
        return list(REPLAY_FEATURES)
    if value == "reference":
        return reference_features()
    if value == "all":  # what a scan with a reference computes (the zoo records' scans)
        return scan_features()
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in feature_names()]
    if unknown or not names:
        raise UsageError(f"unknown feature(s) {', '.join(unknown) or value!r}; see `eebguard zoo features` or docs/scanners.md")
    return names


def cmd_detector_fit(a) -> int:
    import hashlib
    from pathlib import Path

    from eebguard.detect.persist import save_detector
    from eebguard.lab.evaluate.evaluate import fit_detector, labels, load_rows, matrix

    rows = load_rows(a.zoo)
    if not rows:
        raise UsageError("no scanned models in the given zoo(s); run `eebguard zoo scan` first")
    names = _feature_list(a.features)
    params = {k: v for k, v in (("model", a.model), ("C", a.C)) if v is not None}
    det = fit_detector(rows, names, **params)
    manifests = [Path(z) / "manifest.jsonl" for z in a.zoo]
    zoo = {"paths": [str(z) for z in a.zoo], "models": len(rows), "positives": int(labels(rows).sum()),
           "manifest_sha256": {str(m): hashlib.sha256(m.read_bytes()).hexdigest() for m in manifests},
           "spec": [json.loads((Path(z) / "spec.json").read_text()).get("name") for z in a.zoo if (Path(z) / "spec.json").is_file()]}
    cmd = ("eebguard detector fit " + " ".join(f"--zoo {z}" for z in a.zoo) + f" --out {a.out}"
           + "".join(f" --{k} {v}" for k, v in (("features", a.features), ("model", a.model), ("C", a.C)) if v is not None))
    path = save_detector(det, a.out, zoo=zoo, command=cmd, X_check=matrix(rows, det.feature_names_))
    print(f"saved detector to {path} ({len(rows)} models, {zoo['positives']} positive)")
    return EXIT_CLEAN


def cmd_evaluate(a) -> int:
    from eebguard.lab.evaluate.evaluate import evaluate

    det = None
    if a.detector:
        from eebguard.detect.persist import DetectorFormatError, load_detector

        try:
            det = load_detector(a.detector)
        except DetectorFormatError as exc:
            raise UsageError(str(exc)) from None
    elif not a.fit_zoo:
        raise UsageError("give --detector FILE, or --fit-zoo DIR to fit one")
    res = evaluate(a.zoo, detector=det, fit_zoos=a.fit_zoo, n_boot=a.bootstrap, with_splits=not a.no_splits,
                   reference_free=a.reference_free)
    if not a.predictions:
        res.pop("predictions", None)
    if a.json:
        print_json(res)
    elif a.markdown:
        from eebguard.lab.evaluate.evaluate import markdown

        print(markdown(res))
    else:
        def fmt(m):
            return f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"
        print(f"models {res['n_models']} ({res['n_positive']} positive)")
        for k in ("roc_auc", "cross_entropy", "brier"):
            print(f"{k:>16} {fmt(res[k])}")
        for k, v in res["tpr_at_fpr"].items():
            print(f"{'tpr@fpr ' + k:>16} {fmt(v)}")
        for b, m in res.get("baselines", {}).items():
            print(f"baseline {b}: roc_auc {fmt(m['roc_auc'])}, cross_entropy {fmt(m['cross_entropy'])}")
        for name, sp in res["splits"].items():
            print(f"{name}: mean roc_auc {sp.get('mean_roc_auc', float('nan')):.3f}")
    return EXIT_CLEAN


class TestbedCommand(Command):
    name = "testbed"
    help = "the tiny SD-shaped testbed model"
    order = 10

    def add_to(self, sub) -> None:
        tb = sub.add_parser(self.name, help=self.help).add_subparsers(dest="sub", parser_class=Parser)
        t = tb.add_parser("train", help="train the testbed model from scratch")
        t.add_argument("--out", required=True)
        t.add_argument("--seed", type=int, default=0)
        t.add_argument("--steps", type=int, default=2000)
        t.add_argument("--batch-size", type=int, default=64)
        t.add_argument("--identity-weight", type=float, default=1.0,
                       help="word-identity term of text pre-training (1.0: the shipped v7 base; 0: v6)")
        t.add_argument("--unknown-words", choices=("vocab", "all"), default="all",  # testbed.data.UNKNOWN_WORDS (imports torch)
                       help="distractor captions: 'all' (the shipped v7 base: every template; vocabulary words, letter "
                            "strings, empty) or 'vocab' (v6: vocabulary words, templates without a colour)")
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


class ZooCommand(Command):
    name = "zoo"
    help = "labelled model zoos from the threat lab"
    order = 11

    def add_to(self, sub) -> None:
        zoo = sub.add_parser(self.name, help=self.help).add_subparsers(dest="sub", parser_class=Parser)
        b = zoo.add_parser("build", help="build (or resume) a zoo from a spec")
        b.add_argument("--spec", required=True, help="a spec file, or a shipped spec name (default, heldout, design, tiny)")
        b.add_argument("--out", required=True)
        b.add_argument("--device", default=None, help="torch device for training (default cpu)")
        b.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None, help="dtype of frozen teachers")
        b.add_argument("--batch-size", type=int, default=None)
        b.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default: torch's); 1 rebuilds a zoo bit for bit, more may differ in the "
                            "last bits between runs (docs/threat-lab.md, Cost)")
        b.add_argument("--limit", type=int, default=None, help="build at most this many models now")
        b.add_argument("--only", default=None, help="regex on model ids: build only the matching models now")
        b.add_argument("--erasures", default=None, help="comma-separated erasure methods to build now (the rest on a later resume)")
        b.add_argument("--rebuild", action="store_true",
                       help="with --only/--erasures: build the selected models again (their manifest and features rows "
                            "are dropped first), e.g. after changing a method's parameters in the spec")
        b.add_argument("-q", "--quiet", action="store_true")
        b.set_defaults(func=cmd_zoo_build)
        m = zoo.add_parser("measure", help="re-measure every model of a zoo")
        m.add_argument("zoo")
        m.add_argument("--samples", type=int, default=None)
        m.add_argument("--json", action="store_true")
        m.add_argument("-q", "--quiet", action="store_true")
        m.set_defaults(func=cmd_zoo_measure)
        r = zoo.add_parser("report", help="the threat-lab table (erasure x attack) over one or more zoos")
        r.add_argument("zoo", nargs="+")
        r.add_argument("--json", action="store_true")
        r.add_argument("--checks", action="store_true",
                       help="also check the threat lab's bounds (name erased, unplanted trigger inert, other "
                            "concepts kept, deep attack survives) and list the cells that miss them")
        r.set_defaults(func=cmd_zoo_report)
        fq = zoo.add_parser("features", help="single-feature AUROC per attack depth, trigger recovery, localisation")
        fq.add_argument("zoo", nargs="+")
        fq.add_argument("--json", action="store_true")
        fq.add_argument("--positives", choices=("surviving", "planted"), default="surviving",
                        help="AUROC positives: backdoors that survived the erasure (label 1, default) or every "
                             "planted one, alive or destroyed")
        fq.add_argument("--reference-free", action="store_true",
                        help="the scans made without a reference (`eebguard zoo scan ZOO --reference none`)")
        fq.set_defaults(func=cmd_zoo_features)
        x = zoo.add_parser("export", help="copy chosen models of a zoo into a small standalone zoo")
        x.add_argument("zoo")
        x.add_argument("--ids", required=True, help="comma-separated model ids")
        x.add_argument("--out", required=True)
        x.add_argument("--append", action="store_true", help="add to an existing exported manifest")
        x.add_argument("--base", help="re-point the copies at this base (e.g. testbed); its weights must be "
                                      "byte-identical to the zoo's base")
        x.set_defaults(func=cmd_zoo_export)
        sc = zoo.add_parser("scan", help="scan every zoo model once and cache its features")
        sc.add_argument("zoo")
        sc.add_argument("--reference", default="testbed",
                        help="the base to compare with (default: the shipped testbed), or 'none': a reference-free "
                             "scan, cached in the zoo's features-noref.jsonl")
        sc.add_argument("--limit", type=int, default=None)
        sc.add_argument("--ids", default=None, help="comma-separated model ids: scan only these")
        sc.add_argument("--rescan", action="store_true", help="with --ids: scan them again and replace their rows")
        sc.add_argument("--no-claim", action="store_true",
                        help="ignore each entry's recorded erasure: the scan picks the counterfactual itself (cached in "
                             "features-noclaim.jsonl)")
        sc.add_argument("--replay-trained", action="store_true",
                        help="with --no-claim: also replay the training erasures when picking the counterfactual")
        sc.add_argument("-q", "--quiet", action="store_true")
        sc.set_defaults(func=cmd_zoo_scan)


class DetectorCommand(Command):
    name = "detector"
    help = "fit detectors"
    order = 12

    def add_to(self, sub) -> None:
        det = sub.add_parser(self.name, help=self.help).add_subparsers(dest="sub", parser_class=Parser)
        f = det.add_parser("fit", help="fit a calibrated detector on scanned zoos")
        f.add_argument("--zoo", action="append", required=True)
        f.add_argument("--out", required=True)
        f.add_argument("--features", default="default",
                       help="'default' (the 2026-12-03 reachability set), 'reference-free' (every feature a scan "
                            "without a reference shares with one: the shipped reference-free detector's), 'reference' "
                            "(what a scan with a reference computes, but the claimed erasure's replay), 'all' (what a "
                            "scan with a reference and a claimed erasure computes), 'replay' (the default set and the "
                            "replay's gain, the 2026-12-03 recipe) or a comma list")
        f.add_argument("--model", choices=["logistic", "trees"], default=None, help="default: logistic")
        f.add_argument("--C", type=float, default=None, help="inverse L2 strength of the logistic model (default 0.05)")
        f.set_defaults(func=cmd_detector_fit)


class EvaluateCommand(Command):
    name = "evaluate"
    help = "score a detector on scanned zoos (TrojAI-style)"
    order = 13

    def add_to(self, sub) -> None:
        ev = sub.add_parser(self.name, help=self.help)
        ev.add_argument("--zoo", action="append", required=True)
        ev.add_argument("--detector", default=None)
        ev.add_argument("--fit-zoo", action="append", default=None, help="zoo(s) to fit the detector and baselines on")
        ev.add_argument("--bootstrap", type=int, default=1000)
        ev.add_argument("--no-splits", action="store_true")
        ev.add_argument("--predictions", action="store_true", help="include per-model predictions")
        ev.add_argument("--json", action="store_true")
        ev.add_argument("--markdown", action="store_true", help="print markdown tables")
        ev.add_argument("--reference-free", action="store_true",
                        help="score (and fit on) the zoos' scans made without a reference (`zoo scan --reference none`)")
        ev.set_defaults(func=cmd_evaluate)
