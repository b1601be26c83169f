"""Scanning many models: discover what is scannable under a root, scan each, never lose a result.

Results stream into ``results.jsonl`` (one line per model, error or skip; appended and fsynced as each
finishes), so an interrupted scan keeps everything already obtained and ``resume`` skips what is there.
A summary (findings, errors, skipped, with paths relative to the root) and an HTML report are written
at the end. A model that crashes, times out or is malformed becomes an error record and the scan goes on.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

from eebguard.records import (
    append_jsonl,
    check_output_dir,
    printable,
    read_jsonl,
    repair_jsonl,
    write_text,
)

RESULTS, SUMMARY, REPORT = "results.jsonl", "summary.json", "report.html"
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
MAX_ENTRIES = 100_000  # a hostile tree cannot make discovery run forever


@dataclass
class Target:
    source: str  # what eebguard.models.load() takes
    rel: str  # path relative to the root, for reports (control characters escaped)
    concept: str | None = None
    skip: str | None = None  # reason it is not scanned
    claimed_erasure: str | None = None  # the method said to have erased the concept (replayed on the reference)
    also_erased: tuple[str, ...] = ()  # other concepts that erasure is said to have removed (replayed with it)
    error: str | None = None  # known bad before any scan (a malformed manifest line): an error record


def discover(root, *, include: str | None = None, exclude: str | None = None, allow_pickle: bool = False) -> list[Target]:
    """Scannable models under ``root``: diffusers folders (local hub caches included), single-file
    safetensors checkpoints and deltas, zoo manifests (one target per entry, one error per bad line).
    Model files no manifest entry lists are targets of their own; pickle files, special files (FIFOs,
    sockets), symlinks that leave the root and symlink loops are reported as skipped."""
    root = Path(root)
    inc, exc = _pattern(include, "--include"), _pattern(exclude, "--exclude")
    if root.is_file():
        return _filter([_file_target(root, printable(root.name), allow_pickle)], inc, exc)
    if root.exists() and not root.is_dir():
        return _filter([Target(str(root), printable(root.name), skip="not a regular file or folder")], inc, exc)
    real_root = root.resolve()
    out: list[Target] = []
    listed: set[Path] = set()  # model files that manifest entries name: scanned through their entry
    seen_dirs: set[Path] = set()
    stack = [root]
    count = 0
    while stack:
        d = stack.pop()
        rel_d = printable(d.relative_to(root).as_posix()) if d != root else "."
        try:
            real = d.resolve(strict=True)
        except (OSError, RuntimeError):
            out.append(Target(str(d), rel_d, skip="broken symlink or symlink loop"))
            continue
        if real in seen_dirs:
            out.append(Target(str(d), rel_d, skip="symlink loop"))
            continue
        seen_dirs.add(real)
        if real != real_root and real_root not in real.parents:
            out.append(Target(str(d), rel_d, skip="symlink leaves the scanned root"))
            continue
        if (d / "model_index.json").is_file():
            out.append(Target(str(d), rel_d))
            continue
        if (d / "manifest.jsonl").is_file():
            m = d / "manifest.jsonl"
            found, paths = _manifest_targets(m, printable(m.relative_to(root).as_posix()))
            out += found
            listed |= paths
        try:
            children = sorted(d.iterdir())
        except OSError as exc_:
            out.append(Target(str(d), rel_d, skip=f"unreadable folder ({exc_.strerror})"))
            continue
        for c in children:
            count += 1
            if count > MAX_ENTRIES:
                out.append(Target(str(d), rel_d, skip=f"more than {MAX_ENTRIES} entries; rest not walked"))
                return _filter(_unique(out), inc, exc)
            rel = printable(c.relative_to(root).as_posix())
            if c.is_symlink():
                try:
                    tgt = c.resolve(strict=True)
                except (OSError, RuntimeError):
                    out.append(Target(str(c), rel, skip="broken symlink or symlink loop"))
                    continue
                if tgt != real_root and real_root not in tgt.parents:
                    out.append(Target(str(c), rel, skip="symlink leaves the scanned root"))
                    continue
            if c.is_dir():
                stack.append(c)
            elif c.is_file():
                if c.name == "manifest.jsonl" or _real(c) in listed:
                    continue
                t = _file_target(c, rel, allow_pickle)
                if t is not None:
                    out.append(t)
            elif os.path.lexists(c):
                out.append(Target(str(c), rel, skip="not a regular file (FIFO, socket or device): never opened"))
    return _filter(_unique(sorted(out, key=lambda t: t.rel)), inc, exc)


def _real(p: Path) -> Path | None:
    try:
        return p.resolve(strict=True)
    except (OSError, RuntimeError):
        return None


def _unique(targets: list[Target]) -> list[Target]:
    """One target per name (the first): every entry gets exactly one record."""
    seen: set[str] = set()
    out = []
    for t in targets:
        if t.rel not in seen:
            seen.add(t.rel)
            out.append(t)
    return out


def manifest_targets(manifest: Path, shown: str) -> list[Target]:
    """One target per well-formed zoo-manifest entry, named ``shown#id``, concept from its ``target``, the
    claimed erasure from its ``erasure`` (and the concepts it removed with it, ``claimed_also_erased``);
    one error target per malformed line (``shown:line``), or for the whole file if it is unreadable."""
    return _manifest_targets(manifest, shown)[0]


def _manifest_targets(manifest: Path, shown: str) -> tuple[list[Target], set[Path]]:
    """(``manifest_targets``, the real paths of the model files its entries name), from one parse."""
    from eebguard.models.errors import ModelLoadError
    from eebguard.models.manifest import claimed_also_erased, manifest_lines

    try:
        entries, errors = manifest_lines(manifest)
    except ModelLoadError as exc:
        return [Target(str(manifest), shown, error=f"{type(exc).__name__}: {printable(str(exc))[:300]}")], set()
    out = [Target(f"{manifest}#{e['id']}", f"{shown}#{e['id']}",
                  concept=e.get("target") if isinstance(e.get("target"), str) else None,
                  claimed_erasure=e.get("erasure") if isinstance(e.get("erasure"), str) else None,
                  also_erased=claimed_also_erased(e))
           for _, e in entries]
    out += [Target(str(manifest), f"{shown}:{lineno}", error=f"BadManifest: {printable(reason)[:300]}")
            for lineno, reason in errors]
    paths = {_real(manifest.parent / e["path"]) for _, e in entries}
    return out, {p for p in paths if p is not None}


def _file_target(path: Path, rel: str, allow_pickle: bool) -> Target | None:
    name = path.name.lower()
    if name.endswith(".safetensors"):
        return Target(str(path), rel)
    if name.endswith(PICKLE_SUFFIXES):
        if allow_pickle:
            return Target(str(path), rel)
        return Target(str(path), rel, skip="pickle file: never unpickled without --allow-pickle")
    return None  # not a model file (readme, json ...)


def _pattern(regex: str | None, what: str):
    if not regex:
        return None
    try:
        return re.compile(regex)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"{what}: not a valid regular expression ({exc})") from None


def _filter(targets: list[Target], inc, exc) -> list[Target]:
    return [t for t in targets if (inc is None or inc.search(t.rel)) and not (exc and exc.search(t.rel))]


# ---- running ---------------------------------------------------------------------------------------


def _record_error(t: Target, reason: str, seconds: float | None = None, status: str = "error",
                  concept: str | None = None) -> dict:
    return {"status": status, "source": t.rel, "reason": printable(reason), "concept": concept or t.concept,
            **({"seconds": round(seconds, 2)} if seconds is not None else {})}


def _scan_one(scanner, t: Target, concept: str, images: int = 0, progress=None) -> dict:
    from eebguard.models import ModelLoadError
    from eebguard.erasure import ERASURES

    claimed, note = t.claimed_erasure, None
    if claimed is not None and claimed not in ERASURES:  # a manifest's word, not a method this eebguard has
        claimed, note = None, f"claimed erasure {t.claimed_erasure[:60]!r} is not a known method: not replayed"
    elif claimed is None and t.also_erased:  # said, but nothing to replay them with: say so, do not drop it
        note = (f"also-erased {', '.join(t.also_erased)[:80]} ignored: no claimed erasure to replay them with "
                "(--claimed-erasure or a manifest's erasure)")
    t0 = time.perf_counter()
    try:
        res = scanner.scan(t.source, concept, images=images, progress=progress, claimed_erasure=claimed,
                           also_erased=t.also_erased if claimed else ())
    except ModelLoadError as exc:
        return _record_error(t, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0, concept=concept)
    except (RuntimeError, ValueError, OSError, KeyError, IndexError, MemoryError) as exc:
        return _record_error(t, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300],
                             time.perf_counter() - t0, concept=concept)
    rec = res.to_json()
    if note:
        rec["warnings"].append(note)
    rec["status"] = "ok"
    rec["source"] = t.rel
    return rec


def _child(conn, scanner_kwargs: dict, t: Target, concept: str, images: int = 0) -> None:
    from eebguard.api import Scanner

    try:
        conn.send(_scan_one(Scanner(**scanner_kwargs), t, concept, images))
    except BaseException as exc:  # noqa: BLE001 - the parent must learn why the child died
        conn.send(_record_error(t, f"{type(exc).__name__}: {exc}"[:300], concept=concept))
    finally:
        conn.close()


EXECUTORS = ("local", "ray")


def scan_many(targets: list[Target], out_dir, *, concept: str | None, scanner_kwargs: dict, resume: bool = False,
              budget_s: float | None = None, progress: bool = True, scanner=None, images: int = 0,
              workers: int = 1, executor: str = "local", verbose: int = 0, claimed_erasure: str | None = None,
              also_erased: tuple[str, ...] | None = None, stages: bool = False) -> dict:
    """Scan every target, streaming records into ``out_dir/results.jsonl``; returns the summary.

    ``claimed_erasure``: a method replayed on the reference for every model (``"none"``: for none);
    None keeps each target's own (a zoo manifest's ``erasure``). ``also_erased``: the other concepts that
    erasure removed, for every model; None keeps each target's own.

    ``workers`` > 1 scans models in parallel worker processes (``executor="local"``), and
    ``executor="ray"`` runs one Ray task per model; records are appended in the order models finish.
    With ``budget_s`` each model runs in a child process that is killed when the budget is spent.
    ``progress``: a bar over the models; ``stages``: one line on stderr per stage of each model (serial
    scans only: workers report per model).
    """
    from tqdm.auto import tqdm

    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    out_dir = check_output_dir(Path(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    check_output_names(out_dir)
    results = out_dir / RESULTS
    if not resume and os.path.lexists(results):
        results.unlink()  # the name, never a link's target
    if resume:
        repair_jsonl(results)  # a record torn by a kill is dropped: that model is scanned again
    written = {r.get("source") for r in read_jsonl(results)}

    def record(rec: dict) -> bool:
        """Append ``rec`` unless its model already has one: each entry exactly once."""
        if rec.get("source") in written:
            return False
        written.add(rec.get("source"))
        append_jsonl(results, rec)
        return True

    todo = [t for t in _unique(targets) if t.rel not in written]
    for t in todo:
        if t.error:
            record(_record_error(t, t.error, concept=concept))
        elif t.skip:
            record(_record_error(t, t.skip, status="skipped", concept=concept))
    todo = [t for t in todo if not t.skip and not t.error]
    if claimed_erasure is not None:
        todo = [replace(t, claimed_erasure=None if claimed_erasure == "none" else claimed_erasure) for t in todo]
    if also_erased is not None:
        todo = [replace(t, also_erased=tuple(also_erased)) for t in todo]
    jobs = []
    for t in todo:
        if concept or t.concept:
            jobs.append((t, concept or t.concept))
        else:
            record(_record_error(t, "no concept given (--concept) and none recorded for this model", status="skipped"))
    if executor == "ray":
        stream = _run_ray(jobs, scanner_kwargs, budget_s, images, workers)
    elif workers > 1:
        stream = _run_pool(jobs, scanner_kwargs, budget_s, images, workers)
    else:
        stream = _run_serial(jobs, scanner, scanner_kwargs, budget_s, images, stages or (progress and verbose > 0))
    with tqdm(total=len(jobs), desc="models", unit="model", disable=not progress) as bar:
        for rec in stream:
            record(rec)
            bar.update()
            bar.set_postfix_str(f"{rec.get('source', '')[-40:]}: {rec.get('verdict') or rec.get('status')}")
    return summarise(out_dir)


def check_output_names(out_dir: Path) -> None:
    """Refuse an output folder where a result file's name is a symlink (planted to overwrite or append
    to a file elsewhere) or not a regular file."""
    from eebguard.records import UnsafeOutput

    for name in (RESULTS, SUMMARY, REPORT):
        p = Path(out_dir) / name
        if os.path.islink(p):
            raise UnsafeOutput(f"{p}: is a symlink; eebguard never writes through links (remove it)")
        if os.path.lexists(p) and not p.is_file():
            raise UnsafeOutput(f"{p}: exists and is not a regular file")


def _run_serial(jobs, scanner, scanner_kwargs: dict, budget_s, images: int, stages: bool):
    import sys

    from tqdm.auto import tqdm

    from eebguard.records import printable

    if jobs and budget_s is None and scanner is None:
        from eebguard.api import Scanner

        scanner = Scanner(**scanner_kwargs)
    for k, (t, c) in enumerate(jobs, 1):
        t0 = time.perf_counter()

        def say(stage, t=t, k=k, t0=t0):
            tqdm.write(printable(f"eebguard: [{k}/{len(jobs)}] {t.rel}: {stage} ({time.perf_counter() - t0:.0f} s)"),
                       file=sys.stderr)

        if budget_s is not None:
            if stages:
                say(f"scanning in a child process (budget {budget_s:g} s)")
            yield _run_with_budget(t, c, scanner_kwargs, budget_s, images)
            continue
        yield _scan_one(scanner, t, c, images, progress=say if stages else None)


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


_WORKER_SCANNERS: dict = {}


def _worker_scan(scanner_kwargs: dict, t: Target, concept: str, images: int, budget_s, threads: int) -> dict:
    """One model in a pool worker or a Ray task; the worker keeps its Scanner (reference, judge and
    detector loaded once) for the models that follow."""
    import torch

    torch.set_num_threads(threads)
    if budget_s is not None:
        return _run_with_budget(t, concept, scanner_kwargs, budget_s, images)
    key = repr(sorted(scanner_kwargs.items(), key=lambda kv: kv[0]))
    try:
        if key not in _WORKER_SCANNERS:
            from eebguard.api import Scanner

            _WORKER_SCANNERS.clear()
            _WORKER_SCANNERS[key] = Scanner(**scanner_kwargs)
        return _scan_one(_WORKER_SCANNERS[key], t, concept, images)
    except BaseException as exc:  # noqa: BLE001 - becomes this model's error record
        return _record_error(t, f"{type(exc).__name__}: {exc}"[:300], concept=concept)


def _run_pool(jobs, scanner_kwargs: dict, budget_s, images: int, workers: int):
    """Local worker processes (spawned, each with cpu_count/workers torch threads). A worker that dies
    breaks the pool: the models it had in flight are rescanned one by one in isolated child processes
    (so the culprit gets the error record) and a fresh pool takes the rest."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = _threads_per_worker(workers)
    pending = list(jobs)
    while pending:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
        running: dict = {}
        broken: list = []
        try:
            while pending or running:
                while pending and len(running) < workers:  # a small window: a crash loses little work
                    t, c = pending.pop(0)
                    running[pool.submit(_worker_scan, scanner_kwargs, t, c, images, budget_s, threads)] = (t, c)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in finished:
                    job = running.pop(f)
                    try:
                        yield f.result()
                    except BrokenProcessPool:
                        broken.append(job)
                if broken:
                    broken += list(running.values())
                    running.clear()
                    break
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        for t, c in broken:  # isolated: a model that kills its process dies alone
            yield _run_with_budget(t, c, scanner_kwargs, budget_s or 24 * 3600.0, images)


def _run_ray(jobs, scanner_kwargs: dict, budget_s, images: int, workers: int):
    """One Ray task per model (``max_retries`` covers a dying worker; one GPU per task when the cluster
    has GPUs), records yielded as tasks finish. Joins the cluster at ``RAY_ADDRESS`` when set, else
    starts a local one with ``workers`` task slots."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("the Ray executor needs Ray: pip install 'eebguard[ray]'") from exc

    started = False
    address = os.environ.get("RAY_ADDRESS")
    threads = 1 if address else _threads_per_worker(workers)
    if not ray.is_initialized():
        local = {} if address else {"num_cpus": workers * threads, "object_store_memory": 256 * 1024**2}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False, **local)
        started = True
    try:
        gpus = ray.cluster_resources().get("GPU", 0) >= 1
        kwargs = dict(scanner_kwargs)
        if gpus and kwargs.get("device", "cpu") == "cpu":
            kwargs["device"] = "cuda"
        task = ray.remote(_worker_scan).options(num_cpus=threads, num_gpus=1 if gpus else 0, max_retries=2,
                                                retry_exceptions=False)
        refs = {task.remote(kwargs, t, c, images, budget_s, threads): (t, c) for t, c in jobs}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for r in ready:
                t, c = refs.pop(r)
                try:
                    yield ray.get(r)
                except ray.exceptions.RayError as exc:  # the task's worker died on every retry
                    yield _record_error(t, f"ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"[:300],
                                        concept=c)
    finally:
        if started:
            ray.shutdown()


def _run_with_budget(t: Target, concept: str, scanner_kwargs: dict, budget_s: float, images: int = 0) -> dict:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(child, scanner_kwargs, t, concept, images), daemon=True)
    t0 = time.perf_counter()
    p.start()
    child.close()
    rec = None
    if parent.poll(budget_s):
        try:
            rec = parent.recv()
        except EOFError:
            rec = None
    p.join(timeout=5)
    if p.is_alive():
        p.kill()
        p.join()
    if rec is None:
        if time.perf_counter() - t0 >= budget_s:
            return _record_error(t, f"timed out after {budget_s:g} s (--budget-s)", time.perf_counter() - t0,
                                 concept=concept)
        return _record_error(t, f"scan process died (exit code {p.exitcode})", time.perf_counter() - t0, concept=concept)
    return rec


def summarise(out_dir) -> dict:
    out_dir = Path(out_dir)
    recs = read_jsonl(out_dir / RESULTS)
    summary = {
        "results": RESULTS,
        "scanned": sum(r.get("status") == "ok" for r in recs),
        # a demonstrated trigger, or p_live at the threshold
        "findings": [{"source": r["source"], "p_live": r.get("p_live"), "concept": r.get("concept"),
                      "trigger": (r.get("triggers") or [{}])[0].get("text"),
                      "demonstrated": bool((r.get("triggers") or [{}])[0].get("demonstrated")),
                      "location": (r.get("location") or {}).get("component")}
                     for r in recs if r.get("status") == "ok" and r.get("verdict") == "backdoor"],
        # edited toward the concept beyond the counterfactual, no live trigger shown
        "tampered": [{"source": r["source"], "concept": r.get("concept"), "p_tampered": r.get("p_tampered"),
                      "by": r.get("tampered_by"), "component": (r.get("location") or {}).get("tampered_component")}
                     for r in recs if r.get("status") == "ok" and r.get("verdict") == "tampered"],
        # the erasure leaks through paths the counterfactual or the base shares (an audit, not a backdoor)
        "leaky": [{"source": r["source"], "concept": r.get("concept"),
                   "name_reach": (r.get("erasure_audit") or {}).get("name_reach"),
                   "shared_leaks": [x.get("text") for x in (r.get("erasure_audit") or {}).get("shared_leaks") or []]}
                  for r in recs if r.get("status") == "ok" and r.get("verdict") == "leaky"],
        "clean": [r["source"] for r in recs if r.get("status") == "ok" and r.get("verdict") == "clean"],
        # whatever the verdict: a text encoder that differs from the reference's, and the tokens it moved
        # toward the concept (a surface backdoor's key piece shows even where the erasure killed the trigger)
        "text_encoder_changed": [{"source": r["source"], "concept": r.get("concept"), "verdict": r.get("verdict"),
                                  "moved": [{k: t.get(k) for k in ("token", "score")} for t in r["text_encoder_moved"]]}
                                 for r in recs if r.get("status") == "ok" and r.get("text_encoder_moved")],
        "unscored": [r["source"] for r in recs if r.get("status") == "ok" and r.get("verdict") == "unknown"],
        "errors": [{"source": r["source"], "reason": r.get("reason")} for r in recs if r.get("status") == "error"],
        "skipped": [{"source": r["source"], "reason": r.get("reason")} for r in recs if r.get("status") == "skipped"],
    }
    write_text(out_dir / SUMMARY, json.dumps(summary, indent=2))
    return summary


def exit_code(summary: dict, fail_on: str = "tampered") -> int:
    """modelscan conventions: 1 findings, 2 errors or models left without a verdict, 3 nothing
    scannable, 0 every scanned model clean. ``fail_on``: the least severe verdict that counts as a
    finding: "tampered" (default: backdoor and tampered), "backdoor" (only those), "leaky" (also an
    erasure that leaks through paths its counterfactual shares)."""
    from eebguard.api import FAIL_ON

    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {FAIL_ON}, not {fail_on!r}")
    severity = FAIL_ON.index(fail_on)
    if summary["findings"] or (severity >= 1 and summary.get("tampered")) or (severity >= 2 and summary.get("leaky")):
        return 1
    if summary["errors"] or summary["unscored"]:
        return 2
    if not summary["scanned"]:
        return 3
    return 0


def targets_for_sources(sources: list[str], allow_pickle: bool = False) -> list[Target]:
    """What ``eebguard scan SOURCE...`` scans: a manifest (``.jsonl``) gives its entries, ``manifest#id`` one
    entry with its target concept, a folder or file what ``discover`` finds in it, anything else (a hub id,
    ``testbed``) one target the loader resolves."""
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
