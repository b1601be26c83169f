"""The ``eebguard`` command. Thin: it parses arguments and calls the library; no logic lives here.

Exit codes (modelscan conventions): 0 nothing flagged, 1 at least one model flagged (verdict "backdoor"
or "tampered"; ``--fail-on backdoor`` only the first, ``--fail-on leaky`` also "leaky"), 2 scan error or
a model left "unknown", 3 nothing scannable, 4 usage error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from eebguard.records import printable

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


# ---- scan ----------------------------------------------------------------------------------------


def _targets_for(sources: list[str], allow_pickle: bool):
    from eebguard.hubscan import Target, discover, manifest_targets
    from eebguard.paths import data_path

    out = []
    for src in sources:
        p = Path(src)
        manifest, _, entry_id = src.partition("#")
        if p.is_file() and p.suffix == ".jsonl":
            shown = src
            if p.resolve().is_relative_to(data_path().resolve()):  # shipped data: a short, stable name
                shown = "eebguard-data/" + p.resolve().relative_to(data_path().resolve()).as_posix()
            out += manifest_targets(p, shown)
        elif p.exists():
            found = discover(p, allow_pickle=allow_pickle)
            for t in found:
                t.rel = src if t.rel == "." or t.rel == p.name else f"{src.rstrip('/')}/{t.rel}"
            out += found
        elif entry_id and Path(manifest).is_file():  # manifest#id: that entry, with its target concept
            out += [t for t in manifest_targets(Path(manifest), manifest) if t.rel == src] or [Target(src, src)]
        else:  # a hub id or "testbed": the loader decides
            out.append(Target(src, src))
    return out


def _scanner_kwargs(a) -> dict:
    from eebguard.scanners.context import settings_for

    return {"reference": None if a.reference == "none" else a.reference, "detector": a.detector,
            "threshold": a.threshold, "allow_pickle": a.allow_pickle, "judge": a.judge, "device": a.device,
            "settings": settings_for(a.profile), "replay_trained": a.replay_trained,
            "base_candidates": [c for c in a.base_candidates.split(",") if c] if a.base_candidates else None}


def _claimed_erasure(value: str | None) -> str | None:
    if value is None or value == "none":
        return value
    from eebguard.threats.erasure import ERASURES

    if value not in ERASURES:
        raise UsageError(f"--claimed-erasure: unknown method {value!r}; choose from {', '.join(ERASURES.names())} or none")
    return value


def _also_erased(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if value == "none":
        return ()
    names = tuple(n.strip() for n in value.split(",") if n.strip())  # Scanner.scan drops repeats
    if not names or any(len(n) > 64 for n in names):
        raise UsageError(f"--also-erased: give comma-separated concept names or none, not {value[:80]!r}")
    return names


def _check_scan_options(a) -> None:
    """What a scan's options can get wrong, refused (exit 4) before any model loads."""
    import math

    if a.threshold is not None and not 0 <= a.threshold <= 1:
        raise UsageError("--threshold must be in [0, 1]")
    if a.budget_s is not None and not (math.isfinite(a.budget_s) and a.budget_s > 0):
        raise UsageError(f"--budget-s must be a positive number of seconds, not {a.budget_s}")
    _check_device(a.device)
    if a.concept is not None:
        _check_concept(a.concept, a.judge)


def _check_device(value: str) -> None:
    import torch

    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {value[:40]!r}: not a torch device (cpu, cuda, cuda:1, mps ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {value}: no CUDA device on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"--device {value}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {value}: MPS is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {value}: eebguard scans on cpu, cuda or mps")


def _check_concept(concept: str, judge: str) -> None:
    """A concept the judge cannot recognise would leave nothing to measure: a typo (``sevne``) must not
    come back ``clean``."""
    from eebguard.judges import get_judge

    if not concept.strip() or len(concept) > 64:
        raise UsageError("--concept: give the erased concept's name (at most 64 characters)")
    if judge in (None, "none"):
        return
    j = get_judge(judge)
    if not j.knows(concept):
        known = ", ".join(sorted(getattr(j, "concepts", ()))[:40])
        raise UsageError(f"--concept {concept[:40]!r}: the {judge} judge does not know it"
                         + (f"; it knows {known}" if known else ""))


def _check_output(output: str | None, fmts: list[str]) -> None:
    from eebguard.records import UnsafeOutput, check_output_dir

    if not output:
        return
    o = Path(output)
    try:
        if len(fmts) > 1 or o.is_dir():
            check_output_dir(o)
        elif os.path.islink(o):
            raise UnsafeOutput(f"{o}: is a symlink; give a plain file name")
        elif o.parent.exists() and not o.parent.is_dir():
            raise UnsafeOutput(f"{o.parent}: not a folder")
    except UnsafeOutput as exc:
        raise UsageError(f"-o: {exc}") from None


def _write_outputs(records: list[dict], fmts: list[str], output: str | None, quiet: bool) -> list[str]:
    """Each format rendered and written on its own (a failing one never loses the others); the JSON lines
    of the records first. Returns the formats that failed."""
    from eebguard.records import write_text
    from eebguard.reports import EXTENSIONS, render

    failed = []
    o = Path(output) if output else None
    order = sorted(fmts, key=lambda f: f not in ("jsonl", "json"))
    for f in order:
        try:
            text = render(f, records)
            text += "" if text.endswith("\n") else "\n"
            if o is None:
                if not (quiet and f == "console"):
                    sys.stdout.write(text)
                continue
            if len(fmts) == 1 and not o.is_dir():
                o.parent.mkdir(parents=True, exist_ok=True)
                write_text(o, text)
            else:
                o.mkdir(parents=True, exist_ok=True)
                write_text(o / f"eebguard.{EXTENSIONS[f]}", text)
        except Exception as exc:  # noqa: BLE001 - one renderer's bug must not lose the scan
            failed.append(f)
            print(f"eebguard: error: the {f} output failed ({type(exc).__name__}: {str(exc)[:200]})", file=sys.stderr)
    if o is not None and not quiet and "console" not in fmts:
        try:
            print(render("console", records))
        except Exception as exc:  # noqa: BLE001
            print(f"eebguard: error: the console summary failed ({type(exc).__name__})", file=sys.stderr)
    return failed


def _formats(value: str) -> list[str]:
    from eebguard.reports import FORMATS

    fmts = [f.strip() for f in value.split(",") if f.strip()]
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise UsageError(f"unknown format(s) {', '.join(bad) or value!r}; choose from {', '.join(FORMATS)}")
    return fmts


def cmd_scan(a) -> int:
    import tempfile

    from eebguard.hubscan import exit_code, scan_many
    from eebguard.paths import data_path
    from eebguard.records import read_jsonl

    fmts = _formats(a.format)
    _check_scan_options(a)
    _check_output(a.output, fmts)
    claimed, also = _claimed_erasure(a.claimed_erasure), _also_erased(a.also_erased)
    sources = a.source or [str(data_path("examples", "manifest.jsonl"))]
    targets = _targets_for(sources, a.allow_pickle)
    if not targets:
        print("eebguard: nothing scannable in the given sources", file=sys.stderr)
        return EXIT_NOTHING
    with tempfile.TemporaryDirectory() as tmp:
        summary = scan_many(targets, tmp, concept=a.concept, scanner_kwargs=_scanner_kwargs(a),
                            claimed_erasure=claimed, also_erased=also,
                            budget_s=a.budget_s, progress=a.verbose > 0 and not a.quiet, verbose=a.verbose,
                            images=4 if "html" in fmts else 0)  # the HTML report shows generations
        records = read_jsonl(Path(tmp) / "results.jsonl")
    order = {t.rel: i for i, t in enumerate(targets)}
    records.sort(key=lambda r: order.get(r.get("source"), 0))
    failed = _write_outputs(records, fmts, a.output, a.quiet)
    if a.exit_zero:
        return EXIT_CLEAN
    code = exit_code(summary, a.fail_on)
    return EXIT_ERROR if failed and code == EXIT_CLEAN else code


def cmd_scan_hub(a) -> int:
    from eebguard.hubscan import REPORT, check_output_names, discover, exit_code, scan_many
    from eebguard.records import UnsafeOutput, check_output_dir, read_jsonl, write_text
    from eebguard.reports import html_report

    claimed, also = _claimed_erasure(a.claimed_erasure), _also_erased(a.also_erased)
    _check_scan_options(a)
    root = Path(a.root)
    if not os.path.lexists(root):
        raise UsageError(f"{a.root}: no such file or folder")
    if a.executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray needs Ray: pip install 'eebguard[ray]'")
    if a.workers < 1:
        raise UsageError("--workers must be at least 1")
    try:
        check_output_dir(Path(a.output))
        if Path(a.output).is_dir():
            check_output_names(Path(a.output))
    except UnsafeOutput as exc:
        raise UsageError(f"-o: {exc}") from None
    wanted = None
    if a.list:
        try:
            wanted = {line.strip() for line in Path(a.list).read_text(encoding="utf-8").splitlines() if line.strip()}
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--list {a.list}: cannot read it ({type(exc).__name__})") from None
    try:
        targets = discover(root, include=a.include, exclude=a.exclude, allow_pickle=a.allow_pickle)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if wanted is not None:
        targets = [t for t in targets if t.rel in wanted]
    if not targets:
        print(f"eebguard: nothing scannable under {printable(a.root)}", file=sys.stderr)
        return EXIT_NOTHING
    summary = scan_many(targets, a.output, concept=a.concept, scanner_kwargs=_scanner_kwargs(a), resume=a.resume,
                        claimed_erasure=claimed, also_erased=also,
                        budget_s=a.budget_s, progress=not a.quiet, workers=a.workers, executor=a.executor,
                        verbose=a.verbose)
    report_failed = False
    try:  # results.jsonl and summary.json are written; the report comes last and alone
        write_text(Path(a.output) / REPORT, html_report(read_jsonl(Path(a.output) / "results.jsonl"),
                                                        title=f"eebguard hub scan of {root.name}"))
    except Exception as exc:  # noqa: BLE001 - a renderer's bug must not hide the results
        report_failed = True
        print(f"eebguard: error: the HTML report failed ({type(exc).__name__}: {str(exc)[:200]}); "
              f"results.jsonl and summary.json are complete", file=sys.stderr)
    if not a.quiet:
        print(f"{summary['scanned']} scanned, {len(summary['findings'])} flagged as backdoored, "
              f"{len(summary['tampered'])} tampered, {len(summary['leaky'])} leaky, {len(summary['errors'])} errors, "
              f"{len(summary['skipped'])} skipped; results in {printable(a.output)}")
    if a.exit_zero:
        return EXIT_CLEAN
    code = exit_code(summary, a.fail_on)
    return EXIT_ERROR if report_failed and code == EXIT_CLEAN else code


# ---- testbed -------------------------------------------------------------------------------------


def cmd_testbed_train(a) -> int:
    from eebguard.testbed.train import TrainConfig, train

    train(a.out, TrainConfig(seed=a.seed, steps=a.steps, batch_size=a.batch_size,
                                  identity_weight=a.identity_weight, unknown_words=a.unknown_words),
          progress=not a.quiet)
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


def cmd_zoo_report(a) -> int:
    from eebguard.zoo.report import checks, checks_markdown, lab_table, markdown

    for z in a.zoo:
        if not (Path(z) / "manifest.jsonl").is_file():
            raise UsageError(f"{z}: not a zoo (no manifest.jsonl)")
    table = lab_table(a.zoo)
    if a.json:
        _print_json({**table, "checks": checks(table)} if a.checks else table)
    else:
        print(markdown(table) + ("\n" + checks_markdown(checks(table)) if a.checks else ""))
    return EXIT_CLEAN


def cmd_zoo_export(a) -> int:
    from eebguard.zoo.export import export_models

    try:
        written = export_models(a.zoo, [i for i in a.ids.split(",") if i], a.out, append=a.append, base=a.base)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"exported {len(written)} models to {a.out}")
    return EXIT_CLEAN


def cmd_zoo_features(a) -> int:
    from eebguard.evaluate.evaluate import load_rows
    from eebguard.evaluate.scanner_quality import feature_auroc, markdown, recovery_rates
    from eebguard.testbed.tokenizer import load_tokenizer

    rows = load_rows(a.zoo, a.reference_free)
    if not rows:
        raise UsageError("no scanned models in the given zoo(s); run `eebguard zoo scan` first"
                         + (" with --reference none" if a.reference_free else ""))
    auroc, rates = feature_auroc(rows, a.positives), recovery_rates(rows, load_tokenizer())
    if a.json:
        _print_json({"models": len(rows), "positives": a.positives, "feature_auroc": auroc, "recovery": rates})
    else:
        print(markdown(auroc, rates))
    return EXIT_CLEAN


def cmd_zoo_scan(a) -> int:
    from eebguard.zoo.scan import scan_zoo

    ids = [i.strip() for i in a.ids.split(",") if i.strip()] if a.ids else None
    if a.rescan and not ids:
        raise UsageError("--rescan needs --ids (the models whose rows to replace)")
    try:
        summary = scan_zoo(a.zoo, reference=a.reference, progress=not a.quiet, limit=a.limit, ids=ids, rescan=a.rescan,
                           claim=not a.no_claim, replay_trained=a.replay_trained)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    _print_json(summary)
    return EXIT_CLEAN


# ---- detector and evaluation ---------------------------------------------------------------------


def _feature_list(value: str | None) -> list[str]:
    from eebguard.detect.estimator import (DEFAULT_FEATURES, REPLAY_FEATURES, reference_features,
                                           reference_free_features, scan_features)
    from eebguard.features import feature_names

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
    from eebguard.evaluate.evaluate import fit_detector, labels, load_rows, matrix

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
    from eebguard.evaluate.evaluate import evaluate

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
        _print_json(res)
    elif a.markdown:
        from eebguard.evaluate.evaluate import markdown

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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="eebguard", description=__doc__.split("\n")[0])
    from eebguard import __version__
    from eebguard.api import FAIL_ON  # light: the API module imports torch only when it scans

    p.add_argument("--version", action="version", version=f"eebguard {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    tb = sub.add_parser("testbed", help="the tiny SD-shaped testbed model").add_subparsers(dest="sub", parser_class=_Parser)
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

    def scan_options(q):
        q.add_argument("--concept", default=None, help="the erased concept (default: the one a zoo manifest records)")
        q.add_argument("--reference", default="testbed",
                       help="the base the model claims to derive from ('none': reference-free: no counterfactual and no "
                            "trigger search, so nothing can tell a planted trigger; 'auto': the candidate base that "
                            "fingerprints closest, per model; docs/usage.md)")
        q.add_argument("--base-candidates", default=None, metavar="BASES",
                       help="with --reference auto: comma-separated bases to choose among (folders, hub ids, 'testbed'; "
                            "default: the testbed and every pipeline in the local hub cache)")
        q.add_argument("--detector", default="default",
                       help="'default' (the contrastive rule) or a detector fitted on schema-5 zoo features (.json/.npz), "
                            "whose probability is then p_live")
        q.add_argument("--judge", default="testbed", help="concept judge for image-based reachability")
        q.add_argument("--threshold", type=float, default=0.5,
                       help="p_live at which a model is 'backdoor', p_tampered at which it is 'tampered'")
        q.add_argument("--budget-s", type=float, default=None, help="per-model time budget (scan in a child process)")
        q.add_argument("--allow-pickle", action="store_true", help="allow unpickling model files (unsafe)")
        q.add_argument("--profile", choices=["default", "fast"], default="default",
                       help="scan settings; 'fast' is for smoke tests (the detector is calibrated on 'default')")
        q.add_argument("--device", default="cpu", help="torch device for scanning (cpu, cuda, cuda:1 ...)")
        q.add_argument("--fail-on", choices=FAIL_ON, default="tampered",
                       help="least severe verdict that makes the exit code 1: 'tampered' (default: backdoor or tampered), "
                            "'backdoor', or 'leaky' (also an erasure that leaks through paths its counterfactual shares)")
        q.add_argument("--claimed-erasure", default=None, metavar="METHOD",
                       help="the erasure method the model claims (uce, esd_x ...): replayed on the reference, it is the "
                            "counterfactual every search and demonstration contrasts with (default: a zoo manifest's "
                            "'erasure'; 'none' or absent: the scan picks the best-fitting replay itself)")
        q.add_argument("--replay-trained", action="store_true",
                       help="without a claim, also replay the training erasures (ESD-x, ESD-u, AdvUnlearn; minutes each, "
                            "once per concept) when picking the counterfactual")
        q.add_argument("--also-erased", default=None, metavar="CONCEPTS",
                       help="comma-separated other concepts the claimed erasure removed with this one, replayed "
                            "together ('none': none; default: a zoo manifest entry's own)")
        q.add_argument("--exit-zero", action="store_true", help="exit 0 even when models are flagged or fail (usage errors still 4)")
        q.add_argument("-q", "--quiet", action="store_true")
        q.add_argument("-v", "--verbose", action="count", default=0)

    sc = sub.add_parser("scan", help="scan models for erasure-evasion backdoors (default: the shipped examples)")
    sc.add_argument("source", nargs="*", help="model folders, files, zoo manifests, manifest#id, hub ids")
    sc.add_argument("--format", default="console", help="comma-separated: console, json, jsonl, html, sarif")
    sc.add_argument("-o", "--output", default=None, help="output file (a folder for several formats)")
    scan_options(sc)
    sc.set_defaults(func=cmd_scan)
    sh = sub.add_parser("scan-hub", help="walk a folder or local hub cache and scan every model in it")
    sh.add_argument("root")
    sh.add_argument("-o", "--output", required=True, help="output folder: results.jsonl, summary.json, report.html")
    sh.add_argument("--include", default=None, help="regex on relative paths to include")
    sh.add_argument("--exclude", default=None, help="regex on relative paths to exclude")
    sh.add_argument("--list", default=None, help="file of relative paths to scan (one per line)")
    sh.add_argument("--resume", action="store_true", help="skip models already in OUTDIR/results.jsonl")
    sh.add_argument("--workers", type=int, default=1, help="models scanned in parallel (local processes or Ray tasks)")
    sh.add_argument("--executor", choices=["local", "ray"], default="local",
                    help="local worker processes, or Ray (pip install 'eebguard[ray]'; RAY_ADDRESS joins a cluster)")
    scan_options(sh)
    sh.set_defaults(func=cmd_scan_hub)

    zoo = sub.add_parser("zoo", help="labelled model zoos from the threat lab").add_subparsers(dest="sub", parser_class=_Parser)
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

    det = sub.add_parser("detector", help="fit detectors").add_subparsers(dest="sub", parser_class=_Parser)
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

    ev = sub.add_parser("evaluate", help="score a detector on scanned zoos (TrojAI-style)")
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
    return p


def _quiet_libraries() -> None:
    """Library chatter (loading bars, cast warnings) would drown a scan's own output."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import diffusers.utils.logging as dlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()
        import transformers.utils.logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetics must never block a scan
        pass


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"eebguard: error: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - a known failure becomes one line and exit code 2
        from eebguard.detect.persist import DetectorFormatError
        from eebguard.models import ModelLoadError

        if isinstance(exc, (DetectorFormatError, ModelLoadError, OSError)):
            print(f"eebguard: error: {type(exc).__name__}: {printable(str(exc).splitlines()[0]) if str(exc) else ''}",
                  file=sys.stderr)
            return EXIT_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
