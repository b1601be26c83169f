"""``eebguard scan`` and ``eebguard scan-hub``: parse, check, call ``eebguard.hubscan``, write the reports."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from eebguard.cli.base import (
    COMMANDS, EXIT_CLEAN, EXIT_ERROR, EXIT_NOTHING, Command, UsageError,
)
from eebguard.records import printable


def _scanner_kwargs(a) -> dict:
    from eebguard.scanners.settings import settings_for

    return {"reference": None if a.reference == "none" else a.reference, "detector": a.detector,
            "threshold": a.threshold, "allow_pickle": a.allow_pickle, "judge": a.judge, "device": a.device,
            "settings": settings_for(a.profile), "replay_trained": a.replay_trained,
            "base_candidates": [c for c in a.base_candidates.split(",") if c] if a.base_candidates else None}


def _claimed_erasure(value: str | None) -> str | None:
    if value is None or value == "none":
        return value
    from eebguard.erasure import ERASURES

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


def _formats(value: str) -> list[str]:
    from eebguard.reports import format_names

    known = format_names()
    fmts = [f.strip() for f in value.split(",") if f.strip()]
    bad = [f for f in fmts if f not in known]
    if bad or not fmts:
        raise UsageError(f"unknown format(s) {', '.join(bad) or value!r}; choose from {', '.join(known)}")
    return fmts


def cmd_scan(a) -> int:
    import tempfile

    from eebguard.hubscan import exit_code, scan_many, targets_for_sources
    from eebguard.paths import data_path
    from eebguard.records import read_jsonl

    fmts = _formats(a.format)
    _check_scan_options(a)
    _check_output(a.output, fmts)
    claimed, also = _claimed_erasure(a.claimed_erasure), _also_erased(a.also_erased)
    sources = a.source or [str(data_path("examples", "manifest.jsonl"))]
    targets = targets_for_sources(sources, a.allow_pickle)
    if not targets:
        print("eebguard: nothing scannable in the given sources", file=sys.stderr)
        return EXIT_NOTHING
    with tempfile.TemporaryDirectory() as tmp:
        summary = scan_many(targets, tmp, concept=a.concept, scanner_kwargs=_scanner_kwargs(a),
                            claimed_erasure=claimed, also_erased=also,
                            budget_s=a.budget_s, progress=not a.quiet and sys.stderr.isatty(), stages=not a.quiet,
                            verbose=a.verbose,
                            images=4 if "html" in fmts else 0)  # the HTML report shows generations
        records = read_jsonl(Path(tmp) / "results.jsonl")
    order = {t.rel: i for i, t in enumerate(targets)}
    records.sort(key=lambda r: order.get(r.get("source"), 0))
    from eebguard.reports import write_reports

    failed = write_reports(records, fmts, a.output, quiet=a.quiet)
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


def scan_options(q):
    from eebguard.api import FAIL_ON  # light: the API module imports torch only when it scans

    q.add_argument("--concept", default=None, help="the erased concept (default: the one a zoo manifest records)")
    q.add_argument("--reference", default="testbed",
                   help="the base the model claims to derive from ('none': reference-free: no counterfactual and no "
                        "trigger search, so nothing can tell a planted trigger; 'auto': the candidate base that "
                        "fingerprints closest, per model; docs/models.md)")
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
    q.add_argument("--profile", choices=["default", "fast", "smoke"], default="default",
                   help="scan budgets: 'default' (what every measured number uses), 'fast' (smoke tests of a hub), "
                        "'smoke' (minimal budgets and a 64-token vocabulary slice: plumbing checks at SD size)")
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


@COMMANDS.register
class ScanCommand(Command):
    name = "scan"
    help = "scan models for erasure-evasion backdoors (default: the shipped examples)"
    order = 0

    def add_to(self, sub) -> None:
        sc = sub.add_parser(self.name, help=self.help)
        sc.add_argument("source", nargs="*", help="model folders, files, zoo manifests, manifest#id, hub ids")
        sc.add_argument("--format", default="console", help="comma-separated: console, json, jsonl, html, sarif")
        sc.add_argument("-o", "--output", default=None, help="output file (a folder for several formats)")
        scan_options(sc)
        sc.set_defaults(func=cmd_scan)


@COMMANDS.register
class ScanHubCommand(Command):
    name = "scan-hub"
    help = "walk a folder or local hub cache and scan every model in it"
    order = 1

    def add_to(self, sub) -> None:
        sh = sub.add_parser(self.name, help=self.help)
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
