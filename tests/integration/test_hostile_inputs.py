"""Hostile inputs (issue 36): inputs that could fool the verdict, lose results or crash a scan. One hub
holds the whole corpus and is scanned once by `eebguard scan-hub`; the cheaper cases run on their own."""
import json
import math
import os
import pickle
import shutil

import pytest

from eebguard.cli import main
from eebguard.records import read_jsonl


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (self.marker, "w"))


def _tokenizer_json(folder):
    return folder / "tokenizer" / "tokenizer.json"


def _swap_words(folder, a="seven</w>", b="cat</w>"):
    p = _tokenizer_json(folder)
    tj = json.loads(p.read_text())
    v = tj["model"]["vocab"]
    v[a], v[b] = v[b], v[a]
    p.write_text(json.dumps(tj))


def _drop_word(folder, word="seven</w>"):
    """The word gone from the vocabulary, and the merge that built it (else the tokenizer refuses to load)."""
    p = _tokenizer_json(folder)
    tj = json.loads(p.read_text())
    del tj["model"]["vocab"][word]
    tj["model"]["merges"] = [m for m in tj["model"]["merges"]
                             if "".join(m if isinstance(m, list) else m.split(" ")) != word]
    p.write_text(json.dumps(tj))


def _edit_json(path, **changes):
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, base_path):
    """A hub with one of each hostile case; returns (root, the pickle marker)."""
    from eebguard.paths import data_path

    root = tmp_path_factory.mktemp("hostile")
    marker = tmp_path_factory.mktemp("marker") / "pwned"
    # a booby-trapped pickle beside the safetensors weights the loader reads
    shutil.copytree(base_path, root / "pickle-beside")
    with open(root / "pickle-beside" / "unet" / "diffusion_pytorch_model.bin", "wb") as f:
        pickle.dump(_Evil(str(marker)), f)
    # the reference's weights, byte for byte, with two words swapped in the tokenizer
    shutil.copytree(base_path, root / "tokenizer-swap")
    _swap_words(root / "tokenizer-swap")
    # betas above 1: every generation would be NaN
    shutil.copytree(base_path, root / "scheduler-nan")
    _edit_json(root / "scheduler-nan" / "scheduler" / "scheduler_config.json", beta_end=1.5)
    # within the config caps, but 4096 times the reference's pixels
    shutil.copytree(base_path, root / "huge-sample")
    _edit_json(root / "huge-sample" / "unet" / "config.json", sample_size=1024)
    # a zoo: one good entry among bad lines, an unlisted delta in models/, a model file beside the manifest
    zoo = root / "zoo"
    (zoo / "models").mkdir(parents=True)
    examples = data_path("examples")
    good = next(e for e in read_jsonl(examples / "manifest.jsonl") if e["id"] == "seven-none-s0-uce")
    shutil.copy(examples / good["path"], zoo / "models" / "good.safetensors")
    shutil.copy(examples / good["path"], zoo / "models" / "unlisted.safetensors")
    (zoo / "beside.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    lines = [json.dumps({**good, "path": "models/good.safetensors"}).encode(), b'{"id": "bad-utf8", "path": "\xff\xfe"}',
             b"[" * 200_000, b'{"path": "models/good.safetensors"}', b"{not json"]
    (zoo / "manifest.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    # special files and names that could forge report lines or break encoders
    os.mkfifo(root / "a-fifo.safetensors")
    (root / "forged\nERROR    everything-fine.safetensors").write_bytes(b"garbage")
    (root / os.fsdecode(b"name-\xff.safetensors")).write_bytes(b"garbage")
    return root, marker


@pytest.fixture(scope="module")
def corpus_scan(corpus, tmp_path_factory):
    root, marker = corpus
    out = tmp_path_factory.mktemp("hostile-out") / "o"
    code = main(["scan-hub", str(root), "-o", str(out), "--concept", "seven", "--claimed-erasure", "uce",
                 "--profile", "smoke", "-q"])  # the hub scan's bookkeeping, not what the scanners find
    return root, marker, out, code, read_jsonl(out / "results.jsonl")


def test_the_corpus_gives_every_entry_exactly_one_record(corpus_scan):
    from eebguard.hubscan import discover

    root, marker, out, code, recs = corpus_scan
    sources = [r["source"] for r in recs]
    assert len(sources) == len(set(sources)) == len(discover(root))
    assert not marker.exists(), "a pickle payload executed"
    by = {r["source"]: r for r in recs}
    # the zoo: its good entry scanned, each bad line its own error with its own line number, the unlisted
    # delta and the file beside the manifest scanned as models of their own
    assert by["zoo/manifest.jsonl#seven-none-s0-uce"]["status"] == "ok"
    for line in (2, 3, 4, 5):
        assert by[f"zoo/manifest.jsonl:{line}"]["status"] == "error"
        assert f"manifest.jsonl:{line}" in by[f"zoo/manifest.jsonl:{line}"]["reason"]
    assert "not UTF-8" in by["zoo/manifest.jsonl:2"]["reason"]
    assert "nested too deeply" in by["zoo/manifest.jsonl:3"]["reason"]
    assert "'id'" in by["zoo/manifest.jsonl:4"]["reason"]
    assert by["zoo/models/unlisted.safetensors"]["status"] == "ok"
    assert by["zoo/beside.safetensors"]["status"] == "error"
    assert "zoo/models/good.safetensors" not in by  # scanned through its entry
    assert by["a-fifo.safetensors"]["status"] == "skipped" and "FIFO" in by["a-fifo.safetensors"]["reason"]
    assert all(r["concept"] == "seven" for r in recs)  # error records too
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scanned"] + len(summary["errors"]) + len(summary["skipped"]) == len(recs)
    assert code == 1  # the swapped tokenizer is a finding


def test_a_pickle_beside_the_loaded_safetensors_is_named_in_the_record(corpus_scan):
    *_, recs = corpus_scan
    r = next(r for r in recs if r["source"] == "pickle-beside")
    assert r["status"] == "ok"
    ledger = {c["path"]: c for c in r["identity"]["coverage"]}
    assert ledger["unet/diffusion_pytorch_model.bin"]["status"] == "refused"
    assert ledger["unet/diffusion_pytorch_model.safetensors"]["status"] == "loaded"
    assert any("unet/diffusion_pytorch_model.bin" in w and "never unpickled" in w for w in r["warnings"])


def test_a_changed_tokenizer_is_a_finding_and_the_concept_is_checked_through_the_reference_tokens(corpus_scan):
    *_, recs = corpus_scan
    r = next(r for r in recs if r["source"] == "tokenizer-swap")
    assert r["verdict"] == "tampered" and r["tampered_by"] == "tokenizer"
    assert r["location"]["tampered_component"] == "tokenizer"
    diff = r["tokenizer_diff"]
    assert diff["remapped"] == 2 and diff["concept_affected"]
    assert {d["word"] for d in diff["words_tokenized_differently"]} >= {"seven", "cat"}
    # through the reference's tokens the un-erased weights still draw the concept by its name
    assert r["erasure_audit"]["name_reach"] >= 0.5


def test_hostile_configs_are_errors_never_clean(corpus_scan):
    *_, recs = corpus_scan
    by = {r["source"]: r for r in recs}
    assert by["scheduler-nan"]["status"] == "error" and "beta_end" in by["scheduler-nan"]["reason"]
    assert by["huge-sample"]["status"] == "error" and "sample_size" in by["huge-sample"]["reason"]


def test_file_names_cannot_forge_report_lines(corpus_scan):
    from eebguard.reports import render

    root, _, out, _, recs = corpus_scan
    console = render("console", recs)
    assert "forged\\x0aERROR" in console
    assert not any(line.startswith("ERROR    everything-fine") for line in console.splitlines())
    assert "name-\\xff.safetensors" in console
    html = (out / "report.html").read_text()
    assert html.endswith("</html>") and "name-\\xff.safetensors" in html


def test_a_tokenizer_without_the_concepts_word_differs_from_the_reference(tmp_path, base_path, base_pipe):
    from eebguard.models import load
    from eebguard.models.compare import tokenizer_diff

    shutil.copytree(base_path, tmp_path / "m")
    _drop_word(tmp_path / "m")
    diff = tokenizer_diff(base_pipe.tokenizer, load(tmp_path / "m").pipe.tokenizer, ["seven"])
    assert diff["removed"] == 1 and diff["examples"]["removed"] == ["seven</w>"] and diff["concept_affected"]
    assert tokenizer_diff(base_pipe.tokenizer, base_pipe.tokenizer, ["seven"]) is None


def test_a_concept_the_judge_does_not_know_is_a_usage_error(capsys):
    assert main(["scan", "--concept", "sevne", "testbed"]) == 4
    err = capsys.readouterr().err
    assert "'sevne'" in err and "does not know" in err and "seven" in err


@pytest.mark.parametrize("args", [
    ["scan-hub", "ROOT", "-o", "OUT", "--include", "("],
    ["scan-hub", "ROOT", "-o", "OUT", "--exclude", "[a-"],
    ["scan", "ROOT", "--budget-s", "0"],
    ["scan", "ROOT", "--budget-s", "-1"],
    ["scan", "ROOT", "--budget-s", "nan"],
    ["scan", "ROOT", "--device", "quantum"],
    ["scan-hub", "ROOT", "-o", "OUT", "--list", "MISSING"],
])
def test_bad_options_are_usage_errors(args, tmp_path, capsys):
    (tmp_path / "root").mkdir()
    args = [a.replace("ROOT", str(tmp_path / "root")).replace("OUT", str(tmp_path / "out"))
            .replace("MISSING", str(tmp_path / "missing.txt")) for a in args]
    assert main(args) == 4
    assert len(capsys.readouterr().err.strip().splitlines()) <= 2  # usage line + one error line


def _broken_hub(tmp_path, n=3):
    root = tmp_path / "hub"
    root.mkdir()
    for i in range(n):
        (root / f"m{i}.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    return root


def test_outputs_are_never_written_through_planted_symlinks(tmp_path):
    root = _broken_hub(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    victims = {n: outside / n for n in ("results.jsonl", "summary.json.tmp", "report.html", "summary.json")}
    for v in victims.values():
        v.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    for name, v in victims.items():
        os.symlink(v, out / name)
    # refused before anything runs: nothing outside is touched
    assert main(["scan-hub", str(root), "-o", str(out), "--concept", "seven", "--resume", "-q"]) == 4
    assert all(v.read_text() == "precious\n" for v in victims.values())
    # a planted temporary name is never opened: temporary files are made fresh (mkstemp)
    for name in ("results.jsonl", "report.html", "summary.json"):
        os.unlink(out / name)
    assert main(["scan-hub", str(root), "-o", str(out), "--concept", "seven", "-q"]) == 2
    assert all(v.read_text() == "precious\n" for v in victims.values())
    assert len(read_jsonl(out / "results.jsonl")) == 3 and (out / "summary.json.tmp").is_symlink()
    # an output folder that is itself a link is refused before anything runs
    os.symlink(outside, tmp_path / "linked-out")
    assert main(["scan-hub", str(root), "-o", str(tmp_path / "linked-out"), "--concept", "seven", "-q"]) == 4


def test_one_format_into_an_existing_folder_and_a_failing_renderer_lose_nothing(tmp_path, monkeypatch):
    from eebguard.reports.html_report import HtmlFormat

    root = _broken_hub(tmp_path, 1)
    (tmp_path / "existing").mkdir()
    assert main(["scan", str(root), "--concept", "seven", "--format", "json", "-o", str(tmp_path / "existing"), "-q"]) == 2
    assert json.loads((tmp_path / "existing" / "eebguard.json").read_text())["status"] == "error"
    def html_breaks(self, records):
        raise TypeError("sequence item 0: expected str instance, NoneType found")

    monkeypatch.setattr(HtmlFormat, "render", html_breaks)
    code = main(["scan", str(root), "--concept", "seven", "--format", "jsonl,html,sarif", "-o", str(tmp_path / "many"),
                 "-q", "--fail-on", "backdoor"])
    assert code == 2
    assert read_jsonl(tmp_path / "many" / "eebguard.jsonl")[0]["source"].endswith("m0.safetensors")
    assert json.loads((tmp_path / "many" / "eebguard.sarif").read_text())["version"] == "2.1.0"


def test_resume_repairs_a_torn_record_and_scans_that_model_again(tmp_path):
    from eebguard.hubscan import discover, scan_many

    root = _broken_hub(tmp_path)
    out = tmp_path / "out"
    scan_many(discover(root), out, concept="seven", scanner_kwargs={}, progress=False)
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])  # killed mid-write
    summary = scan_many(discover(root), out, concept="seven", scanner_kwargs={}, progress=False, resume=True)
    recs = read_jsonl(out / "results.jsonl")
    assert sorted(r["source"] for r in recs) == ["m0.safetensors", "m1.safetensors", "m2.safetensors"]
    assert len((out / "results.jsonl").read_text().splitlines()) == 3  # the torn half is gone
    assert len(summary["errors"]) == 3


def test_a_model_named_twice_is_recorded_once(tmp_path):
    from eebguard.hubscan import discover, scan_many

    root = _broken_hub(tmp_path, 1)
    targets = discover(root) * 2
    scan_many(targets, tmp_path / "out", concept="seven", scanner_kwargs={}, progress=False)
    assert len((tmp_path / "out" / "results.jsonl").read_text().splitlines()) == 1


def test_symlink_loops_fail_fast(tmp_path):
    from eebguard.hubscan import discover

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    os.symlink(tmp_path / "b", tmp_path / "a" / "to-b")
    os.symlink(tmp_path / "a", tmp_path / "b" / "to-a")
    os.symlink(tmp_path / "self", tmp_path / "self")
    targets = {t.rel: t for t in discover(tmp_path)}
    assert "loop" in targets["self"].skip
    assert all(t.skip for t in targets.values())
    assert main(["scan", str(tmp_path / "self"), "--concept", "seven", "-q"]) in (2, 3)


def test_non_finite_generations_are_errors_not_evidence(base_pipe, judge):
    import torch

    from eebguard.sampling import NonFiniteGeneration

    with pytest.raises(NonFiniteGeneration):
        judge.is_concept(torch.full((2, 3, 16, 16), math.nan), "seven")
    from eebguard.models.configs import BadConfig, validate_config

    cfg = dict(base_pipe.scheduler.config)
    for bad in ({"beta_end": 1.5}, {"beta_start": -0.1}, {"beta_start": 0.5, "beta_end": 0.1},
                {"num_train_timesteps": 10**9}, {"trained_betas": [2.0] * 1000}, {"prediction_type": "x"}):
        with pytest.raises(BadConfig):
            validate_config("scheduler", {**cfg, **bad}, "scheduler_config.json")
