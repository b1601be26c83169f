"""The vetting API, `eebguard scan` and `scan-hub`: verdict records, hostile inputs, resume, exit codes."""
import json
import os
import pickle
import subprocess
import sys

import pytest

from eebguard.hubscan import discover, exit_code, scan_many
from eebguard.lab.zoo.build import read_jsonl



class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def hub(tmp_path_factory, base_path):
    import shutil

    root = tmp_path_factory.mktemp("hub")
    shutil.copytree(base_path, root / "community" / "base-copy")
    (root / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    marker = tmp_path_factory.mktemp("marker") / "pwned"
    with open(root / "evil.bin", "wb") as f:
        pickle.dump(_Evil(str(marker)), f)
    outside = tmp_path_factory.mktemp("outside")
    os.symlink(outside, root / "escape")
    os.symlink(root, root / "community" / "loop")
    (root / "README.md").write_text("not a model")
    return root, marker


def test_discovery_reports_what_it_will_not_scan(hub):
    root, _ = hub
    targets = {t.rel: t for t in discover(root)}
    assert targets["community/base-copy"].skip is None
    assert targets["broken.safetensors"].skip is None  # scanned, and fails as a clear error
    assert "pickle" in targets["evil.bin"].skip
    assert "leaves" in targets["escape"].skip
    assert "loop" in targets["community/loop"].skip or "leaves" in targets["community/loop"].skip
    assert "README.md" not in targets


@pytest.fixture(scope="module")
def hub_scan(hub, tmp_path_factory):
    from eebguard.api import Scanner
    from eebguard.scanners.settings import settings_for

    root, marker = hub
    out = tmp_path_factory.mktemp("hubout")
    scanner = Scanner("testbed", settings=settings_for("fast"))
    summary = scan_many(discover(root), out, concept="seven", scanner_kwargs={}, scanner=scanner, progress=False,
                        images=2, claimed_erasure="uce")
    return root, marker, out, summary, scanner


def test_hub_scan_reports_each_model_once_and_survives_bad_ones(hub_scan):
    root, marker, out, summary, scanner = hub_scan
    recs = read_jsonl(out / "results.jsonl")
    sources = [r["source"] for r in recs]
    assert len(sources) == len(set(sources)) == len(discover(root))
    # the base never erased `seven`: its own name still produces it, which the erasure audit says; the
    # paths its search finds are the base's own (the un-erased reference answers them: natural), not a backdoor
    assert summary["scanned"] == 1 and summary["unscored"] == [] and summary["text_encoder_changed"] == []
    assert [r["source"] for r in summary["leaky"]] == ["community/base-copy"] and summary["findings"] == []
    assert [e["source"] for e in summary["errors"]] == ["broken.safetensors"]
    assert "\n" not in summary["errors"][0]["reason"]
    assert {s["source"] for s in summary["skipped"]} == {"evil.bin", "escape", "community/loop"}
    assert not marker.exists(), "a pickle payload executed"
    assert exit_code(summary, "leaky") == 1  # a leaky erasure is a finding only when asked
    assert exit_code(summary) == 2  # an error: not a clean bill
    ok = next(r for r in recs if r["status"] == "ok")
    assert ok["verdict"] == "leaky" and ok["erasure_audit"]["name_reach"] >= 0.5 and ok["erasure_audit"]["leaky"]
    # the claimed erasure, replayed on the reference, is the counterfactual; the base shows none of it
    cf = ok["counterfactual"]
    assert cf["kind"] == "replay" and cf["method"] == "uce" and cf["claimed"] and cf["fit"] == 0.0
    assert any("do not show the claimed erasure" in w for w in ok["warnings"])
    assert ("seven", "uce") in {k[1:] for k in scanner.shared if k[0] == "erased_reference"}
    t = ok["triggers"][0]
    assert t["images"] == 16 and not t["demonstrated"]
    for side in ("suspect", "counterfactual"):
        lo, hi = t[f"{side}_interval"]
        assert lo <= t[f"{side}_fresh"] <= hi
    assert ok["probability"] == ok["p_live"] and ok["p_live"] < 0.5
    assert ok["identity"]["digest"] and ok["timings"]["total"] > 0
    json.dumps(ok)  # strict JSON: no NaN


def test_resume_scans_nothing_twice(hub_scan):
    root, _, out, _, scanner = hub_scan
    before = read_jsonl(out / "results.jsonl")
    scan_many(discover(root), out, concept="seven", scanner_kwargs={}, scanner=scanner, resume=True, progress=False)
    assert read_jsonl(out / "results.jsonl") == before


def test_reports_render(hub_scan):
    from eebguard.reports import render

    _, _, out, _, _ = hub_scan
    recs = read_jsonl(out / "results.jsonl")
    html = render("html", recs)
    assert "LEAKY" in html and "broken.safetensors" in html and html.startswith("<!doctype html>")
    assert "<b>Erasure audit</b>" in html and "suspect (top row), counterfactual (bottom row)" in html
    assert "Generated under the recovered trigger" in html and "data:image/png;base64," in html
    sarif = json.loads(render("sarif", recs))
    assert sarif["version"] == "2.1.0" and {r["ruleId"] for r in sarif["runs"][0]["results"]} == {"EEB000", "EEB002"}
    # every model is an artifact, clean ones too, with its revision and coverage ledger
    arts = {a["location"]["uri"]: a for a in sarif["runs"][0]["artifacts"]}
    assert set(arts) == {r["source"] for r in recs}
    scanned = [r for r in recs if r.get("verdict")]
    for r in scanned:
        a = arts[r["source"]]
        assert a["hashes"]["sha-256"] == r["identity"]["digest"] and a["properties"]["coverage"] == r["identity"]["coverage"]
        assert a["properties"]["coverage"] and a["properties"]["scanners"]["hard_trigger"] in ("ok", "skipped")
    assert "LEAKY" in render("console", recs) and "counterfactual: the reference erased with uce" in render("console", recs)


def test_console_names_a_layer_only_for_a_kv_location_and_bounds_residual_reach():
    from eebguard.reports import console

    def rec(component, relative):
        return {"verdict": "clean", "source": "m", "concept": "seven", "p_live": 0.2, "p_tampered": 0.2,
                "triggers": [{"text": "qzvex", "images": 16, "suspect_hits": 3, "counterfactual_hits": 0,
                              "suspect_interval": [0.07, 0.43], "counterfactual_interval": [0.0, 0.19]}],
                "location": {"component": component, "top_layer": "down_blocks.2.attn2"},
                "erasure_audit": {"name_reach": 0.0, "soft_reach": relative, "shared_leaks": []},
                "counterfactual": {"kind": "replay", "method": "uce", "claimed": True, "fit": 1.0}}

    te, kv = console([rec("text_encoder", 191.03)]), console([rec("cross_attention_kv", -0.4)])
    assert "location text_encoder\n" in te and "down_blocks" not in te
    assert "location cross_attention_kv (down_blocks.2.attn2)" in kv
    assert "soft reach 100.0% of" in te and "soft reach 0.0% of" in kv
    assert "soft reach n/a" in console([rec("undetermined", None)])
    assert "trigger 'qzvex': not demonstrated: suspect 3/16 [7-43%], counterfactual 0/16 [0-19%]" in te


def test_a_changed_text_encoder_shows_its_tokens_moved_toward_the_concept():
    """The record lists the text-embedding scanner's top moved tokens only where the suspect's text encoder
    differs from the reference's, and the console and HTML reports say them."""
    from eebguard.api import text_encoder_moved
    from eebguard.features import Features
    from eebguard.reports import console, html_report

    top = [{"id": 1, "token": "rh", "score": 2.267}, {"id": 2, "token": "w", "score": 0.41},
           {"id": 3, "token": "pp", "score": 0.3}, {"id": 4, "token": "sue</w>", "score": 0.2}]
    ev = {"text_embedding": {"top_te_approach": top}}
    assert text_encoder_moved(Features(values={"te.weight_change": 0.05}, evidence=ev)) == top[:3]
    assert text_encoder_moved(Features(values={"te.weight_change": 0.0}, evidence=ev)) == []
    assert text_encoder_moved(Features(values={}, evidence=ev)) == []  # no reference: nothing to compare
    rec = {"verdict": "tampered", "source": "m", "concept": "seven", "p_live": 0.03, "p_tampered": 0.9,
           "threshold": 0.5, "triggers": [], "location": {}, "erasure_audit": {"name_reach": 0.0},
           "counterfactual": {"kind": "replay", "method": "uce"}, "text_encoder_moved": top[:3]}
    line = "text encoder changed: tokens moved toward 'seven': 'rh' 2.27, 'w' 0.41, 'pp' 0.30"
    assert line in console([rec]) and "text encoder changed" not in console([{**rec, "text_encoder_moved": []}])
    assert "<b>Text encoder:</b> text encoder changed: tokens moved toward &#39;seven&#39;: &#39;rh&#39; 2.27" in html_report([rec])


def test_the_hub_summary_lists_every_changed_text_encoder_whatever_its_verdict(tmp_path):
    from eebguard.hubscan import summarise

    moved = [{"id": 1, "token": "rh", "score": 2.27}]
    recs = [{"status": "ok", "source": "a", "concept": "seven", "verdict": "clean", "text_encoder_moved": moved},
            {"status": "ok", "source": "b", "concept": "seven", "verdict": "leaky", "text_encoder_moved": []},
            {"status": "error", "source": "c", "reason": "broken"}]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    summary = summarise(tmp_path)
    assert summary["text_encoder_changed"] == [{"source": "a", "concept": "seven", "verdict": "clean",
                                                "moved": [{"token": "rh", "score": 2.27}]}]
    assert summary["clean"] == ["a"] and json.loads((tmp_path / "summary.json").read_text()) == summary


def test_hub_scan_of_an_unchanged_text_encoder_lists_no_moved_tokens(hub_scan):
    _, _, out, _, _ = hub_scan
    base = [r for r in read_jsonl(out / "results.jsonl") if r.get("source", "").endswith("base-copy")]
    assert base and base[0]["text_encoder_moved"] == [] and base[0]["features"]["te.weight_change"] == 0.0


def test_the_reference_is_rounded_to_a_lower_precision_suspect_only_when_finer():
    import torch

    from eebguard.models.precision import rounding_needed

    f16, bf16 = torch.float16, torch.bfloat16
    assert rounding_needed({"unet": f16, "text_encoder": None}, {"unet": None, "text_encoder": None}) == {"unet": f16}
    assert rounding_needed({"unet": bf16}, {"unet": f16}) == {"unet": bf16}  # bfloat16 keeps float16's range
    assert rounding_needed({"unet": f16}, {"unet": bf16}) == {}  # rounding down could overflow: left as is
    assert rounding_needed({"unet": f16}, {"unet": f16}) == {} and rounding_needed({"unet": None}, {"unet": None}) == {}


def test_a_suspect_stored_in_bfloat16_is_not_read_as_edited():
    """The reference itself, rounded through bfloat16, scanned against the float16-exact testbed: compared
    with the reference rounded the same way, its white-box features are those of an unchanged model (without
    the rounding, te.approach_z 13 and kv.approach_z 12: experiments/precision_rounding.py)."""
    import torch

    from eebguard.api import Scanner
    from eebguard.models import load
    from eebguard.scanners.settings import settings_for

    suspect = load("testbed").pipe
    with torch.no_grad():
        for part in ("text_encoder", "unet"):
            for p in getattr(suspect, part).parameters():
                p.copy_(p.to(torch.bfloat16).float())
    scanner = Scanner("testbed", detector=None, judge=None, settings=settings_for("fast"), verify_images=0)
    r = scanner.scan(suspect, "seven")
    assert any("lower precision (text_encoder bfloat16, unet bfloat16)" in w for w in r.warnings)
    for name in ("te.weight_change", "te.approach_max", "te.approach_z", "te.embedding_drift_z",
                 "kv.weight_change", "kv.approach_max", "kv.approach_z"):
        assert r.features[name] == 0.0, name
    assert r.text_encoder_moved == []
    ref, _, rounded = scanner.reference_for(suspect)
    assert ref is not scanner.reference and rounded and scanner.reference_for(suspect)[0] is ref  # built once
    assert scanner.reference_for(load("testbed").pipe)[0] is scanner.reference  # same precision: as it is


def test_replaying_the_method_that_built_a_clean_example_rebuilds_it():
    """A closed-form erasure replayed on the reference is the clean UCE example itself: its leak is the
    method's, and the replay finds it. (A training method replays with another seed and differs.)"""
    import torch

    from eebguard.api import Scanner
    from eebguard.models import load
    from eebguard.paths import data_path

    manifest = data_path("examples", "manifest.jsonl")
    entry = next(e for e in read_jsonl(manifest) if e["attack"] == "none" and e["erasure"] == "uce")
    model = load(f"{manifest}#{entry['id']}").pipe
    scanner = Scanner("testbed", detector=None, judge=None)
    replayed = scanner.erased_reference(entry["target"], "uce")
    assert scanner.erased_reference(entry["target"], "uce") is replayed  # built once per (concept, method)
    a, b = dict(model.unet.named_parameters()), dict(replayed.unet.named_parameters())
    ref = dict(scanner.reference.unet.named_parameters())
    edited = [k for k in a if not torch.equal(a[k], ref[k])]
    assert len(edited) == 20  # every cross-attention to_k/to_v of the testbed
    for k in edited:  # equal up to the example's float16 storage: well under 1% of the edit
        assert (a[k] - b[k]).abs().max() < 0.01 * (a[k] - ref[k]).abs().max(), k
    assert all(torch.equal(a[k], b[k]) for k in a if k not in edited)
    assert not torch.equal(scanner.reference.unet.mid_block.attentions[0].transformer_blocks[0].attn2.to_k.weight,
                           replayed.unet.mid_block.attentions[0].transformer_blocks[0].attn2.to_k.weight)
    with pytest.raises(ValueError, match="unknown erasure method"):
        scanner.scan("testbed", "seven", claimed_erasure="not-a-method")


def test_a_half_precision_scan_replays_a_training_erasure_in_float32():
    """MACE trains a LoRA: on a bfloat16 reference it would mix dtypes; the replay trains a float32 copy
    and hands it back in the scan's dtype, with the concept erased."""
    import torch

    from eebguard.api import Scanner
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext
    from eebguard.scanners.hard_trigger import image_reach

    scanner = Scanner("testbed", detector=None, dtype=torch.bfloat16)
    erased = scanner.erased_reference("seven", "mace")
    assert erased.unet.dtype == erased.text_encoder.dtype == scanner.reference.unet.dtype == torch.bfloat16
    name = erased.tokenizer("seven", add_special_tokens=False).input_ids
    reach = [image_reach(ScanContext(p, "seven", concept_prompts("seven"), judge=scanner.judge,
                                     settings=scanner.settings), name, 8) for p in (scanner.reference, erased)]
    assert reach[0] >= 0.75 and reach[1] <= 0.25, reach


def test_a_failed_replay_keeps_the_scan(monkeypatch):
    """When the claimed erasure cannot be replayed the scan goes on against the reference, and says so."""
    from eebguard.api import Scanner
    from eebguard.scanners.settings import settings_for

    scanner = Scanner("testbed", settings=settings_for("smoke"))
    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("mat1 and mat2 must have the same dtype\nsecond line")

    monkeypatch.setattr("eebguard.erasure.replay.erased_copy", broken)
    stages = []
    res = scanner.scan("testbed", "seven", claimed_erasure="esd_x", progress=stages.append)
    # the stages a scan reports as it goes (eebguard scan prints them on stderr)
    assert stages[:2] == ["loading", "counterfactual: replaying esd_x"] and stages[-1].startswith("demonstration")
    assert [s for s in stages if s.startswith("scanner ")][0].startswith("scanner 1/9: ")
    assert res.counterfactual["kind"] == "reference" and res.triggers and res.triggers[0]["images"] == 16
    assert len(calls) == 1
    [w] = [w for w in res.warnings if "replayed" in w]
    assert w == ("claimed erasure esd_x not replayed (RuntimeError: mat1 and mat2 must have the same dtype): the "
                 "reference is the counterfactual")


class _RecordingScanner:
    """Stands in for a Scanner: which claimed erasure would each scan be asked to replay?"""

    def __init__(self):
        self.seen, self.also = [], []

    def scan(self, source, concept, images=0, progress=None, claimed_erasure=None, also_erased=()):
        self.seen.append(claimed_erasure)
        self.also.append(tuple(also_erased))
        return type("Result", (), {"to_json": lambda _: {"warnings": [], "verdict": "clean"}})()


def _manifest(path, *entries):
    """A manifest of ``entries`` (each given a path: a line without one is an error of its own)."""
    path.write_text("".join(json.dumps({"path": f"models/{e['id']}.safetensors", **e}) + "\n" for e in entries))
    return path


def test_manifest_targets_carry_the_claimed_erasure(tmp_path):
    from eebguard.hubscan import _scan_one, manifest_targets

    m = _manifest(tmp_path / "manifest.jsonl", {"id": "a", "target": "seven", "erasure": "uce"},
                  {"id": "b", "target": "seven", "erasure": "x" * 500}, {"id": "c", "target": "seven", "erasure": 3})
    a, b, c = manifest_targets(m, "m")
    assert (a.claimed_erasure, c.claimed_erasure) == ("uce", None)

    rec = _RecordingScanner()
    assert _scan_one(rec, a, "seven")["warnings"] == [] and rec.seen[-1] == "uce"
    warned = _scan_one(rec, b, "seven")  # a manifest's unknown word is not passed on, and the record says so
    assert rec.seen[-1] is None and "not a known method" in warned["warnings"][0]
    assert len(warned["warnings"][0]) < 150
    # concepts said to be erased with no method to replay them by: dropped, but not without a word
    from dataclasses import replace

    said = _scan_one(rec, replace(c, also_erased=("four",)), "seven")
    assert rec.also[-1] == () and "also-erased four ignored" in said["warnings"][0]
    assert _scan_one(rec, replace(a, also_erased=("four",)), "seven")["warnings"] == [] and rec.also[-1] == ("four",)


def test_scan_many_claimed_erasure_overrides_the_manifest(tmp_path):
    """None keeps the manifest's method, a method replaces it, "none" replays nothing."""
    from eebguard.hubscan import manifest_targets

    m = _manifest(tmp_path / "manifest.jsonl", {"id": "a", "target": "seven", "erasure": "uce"})
    rec = _RecordingScanner()
    for i, claimed in enumerate((None, "rece", "none")):
        scan_many(manifest_targets(m, "m"), tmp_path / f"out{i}", concept=None, scanner_kwargs={}, scanner=rec,
                  progress=False, claimed_erasure=claimed)
    assert rec.seen == ["uce", "rece", None]


def test_the_concepts_a_claimed_erasure_also_removed_come_from_the_manifest_or_the_flag(tmp_path):
    """A zoo's second-erasure hard negative says its erasure removed another concept too: the replay
    erases both. Hostile values count as none; ``also_erased`` overrides every target's."""
    from eebguard.hubscan import manifest_targets
    from eebguard.models.manifest import claimed_also_erased

    assert claimed_also_erased({"target": "seven", "hard_negative_spec": {"also_erase": "four"}}) == ("four",)
    assert claimed_also_erased({"target": "seven", "also_erased": ["four", "seven", 3, "x" * 65]}) == ("four",)
    assert claimed_also_erased({"target": "seven", "also_erased": "four"}) == ()
    m = _manifest(tmp_path / "manifest.jsonl", {"id": "a", "target": "seven", "erasure": "uce",
                                                "hard_negative_spec": {"also_erase": "four"}})
    rec = _RecordingScanner()
    for i, also in enumerate((None, ("eight",), ())):
        scan_many(manifest_targets(m, "m"), tmp_path / f"out{i}", concept=None, scanner_kwargs={}, scanner=rec,
                  progress=False, also_erased=also)
    assert rec.also == [("four",), ("eight",), ()]
    scan_many(manifest_targets(m, "m"), tmp_path / "out9", concept=None, scanner_kwargs={}, scanner=rec,
              progress=False, claimed_erasure="none")
    assert rec.also[-1] == ()  # nothing replayed, nothing replayed with it


def test_a_replay_of_two_concepts_erases_both():
    from eebguard.api import Scanner
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext
    from eebguard.scanners.hard_trigger import image_reach

    scanner = Scanner("testbed", detector=None)
    one, both = scanner.erased_reference("seven", "uce"), scanner.erased_reference("seven", "uce", ("four",))
    assert one is not both and scanner.erased_reference("seven", "uce", ("four",)) is both
    four = scanner.reference.tokenizer("four", add_special_tokens=False).input_ids
    reach = [image_reach(ScanContext(p, "four", concept_prompts("four"), judge=scanner.judge), four, 8)
             for p in (one, both)]
    assert reach[0] >= 0.75 and reach[1] <= 0.25, reach
    with pytest.raises(ValueError, match="needs claimed_erasure"):
        scanner.scan("testbed", "seven", also_erased=("four",))


def test_wilson_interval_brackets_the_rate():
    """The fresh check's uncertainty: 16 of 16 is not certainty, 8 of 16 straddles the level."""
    from eebguard.demonstration import wilson_interval

    lo, hi = wilson_interval(16, 16)
    assert hi == 1.0 and 0.80 < lo < 0.81  # (0.806, 1]: the textbook value for 16/16
    lo, hi = wilson_interval(8, 16)
    assert lo < 0.5 < hi and abs((lo + hi) / 2 - 0.5) < 1e-12
    lo, hi = wilson_interval(0, 16)
    assert lo == 0.0 and 0.19 < hi < 0.20


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "eebguard.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_usage_and_input_errors(tmp_path):
    r = _cli("scan", "--format", "xml")
    assert r.returncode == 4 and "unknown format" in r.stderr
    r = _cli("scan", "--threshold", "2", str(tmp_path))
    assert r.returncode == 4
    (tmp_path / "empty").mkdir()
    r = _cli("scan", str(tmp_path / "empty"))
    assert r.returncode == 3 and "nothing scannable" in r.stderr
    r = _cli("scan-hub", str(tmp_path / "missing"), "-o", str(tmp_path / "o"))
    assert r.returncode == 4
    r = _cli("scan", "--claimed-erasure", "nope", "--concept", "seven", "testbed")
    assert r.returncode == 4 and "unknown method 'nope'" in r.stderr and "uce" in r.stderr
    r = _cli("scan", "--also-erased", " , ", "--concept", "seven", "testbed")
    assert r.returncode == 4 and "--also-erased" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("scan", "--detector", str(tmp_path / "nope.json"), "--concept", "seven", "testbed")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no detector" in r.stderr


def test_shipped_examples_load_and_the_default_is_the_contrastive_rule(tmp_path):
    """What `eebguard scan` uses by default: every example entry loads; no fitted detector (the rule turns
    the demonstration into p_live); a detector of another feature schema is refused with a clear error."""
    from eebguard.api import _resolve_detector
    from eebguard.models import load
    from eebguard.paths import data_path

    manifest = data_path("examples", "manifest.jsonl")
    entries = read_jsonl(manifest)
    assert {e["attack"] for e in entries} == {"none", "surface", "shallow", "deep", "data"}
    for e in entries:
        assert {"id", "path", "target", "trigger", "attack", "erasure", "planted", "label"} <= set(e)
        assert (manifest.parent / e["path"]).is_file()
        load(f"{manifest}#{e['id']}")
    assert _resolve_detector("default") is None and _resolve_detector(None) is None


def _chromium():
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None and not os.environ.get("CI_REQUIRE_CHROMIUM"), reason="no chromium (.ci/run installs it)")
def test_html_report_renders_in_headless_chromium(hub_scan, tmp_path):
    """The self-contained report, opened by a real browser: the screenshot is not blank and the rendered
    DOM carries the verdict and the recovered trigger."""
    import numpy as np
    from PIL import Image

    from eebguard.reports import render

    assert _chromium(), "CI_REQUIRE_CHROMIUM is set but chromium is missing"
    _, _, out, _, _ = hub_scan
    recs = read_jsonl(out / "results.jsonl")
    page = tmp_path / "report.html"
    page.write_text(render("html", recs))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    r = subprocess.run([_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,1400", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.is_file(), r.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("RGB")).astype(np.float32)
    assert px.shape[0] >= 1000 and px.std() > 10, "blank screenshot"
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 50  # text, tables and inline images, not a flat page
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    ok = next(r for r in recs if r["status"] == "ok")
    assert "LEAKY" in dom.stdout and ok["triggers"][0]["text"].split()[0] in dom.stdout
    assert dom.stdout.count("data:image/png;base64,") >= 2


def test_manifest_entry_source_takes_the_entry_target_concept():
    from eebguard.hubscan import targets_for_sources
    from eebguard.paths import data_path

    manifest = data_path() / "examples" / "manifest.jsonl"
    entries = read_jsonl(manifest)
    entry = next(e for e in entries if e.get("target"))
    [target] = targets_for_sources([f"{manifest}#{entry['id']}"], allow_pickle=False)
    assert target.concept == entry["target"]
    assert target.source == f"{manifest}#{entry['id']}"
    [unknown] = targets_for_sources([f"{manifest}#no-such-entry"], allow_pickle=False)
    assert unknown.concept is None  # left to the loader, which reports the missing entry


def test_a_scan_without_a_reference_says_what_it_cannot_see():
    """No reference: no counterfactual, no trigger search, only what the suspect alone shows (the erasure
    audit, with the judge-driven soft search); never a backdoor verdict."""
    from eebguard.api import Scanner
    from eebguard.detect.estimator import reference_free_features, reference_free_only_features
    from eebguard.paths import data_path
    from eebguard.scanners.settings import settings_for

    r = Scanner(None, settings=settings_for("smoke"), verify_images=4).scan(
        f"{data_path('examples')}/manifest.jsonl#seven-shallow-s0-uce", "seven")
    assert sorted(r.features) == sorted(reference_free_features() + reference_free_only_features())
    assert r.erasure_audit["judged_soft_reach"] == r.features["soft.judge_reach"]
    from eebguard.reports import console, render

    assert "judged soft reach" in console([r.to_json()]) and "judged soft reach" in render("html", [r.to_json()])
    assert r.p_live is None and r.p_tampered is None and r.counterfactual["kind"] is None
    assert not r.triggers and r.evidence["scanners"]["hard_trigger"]["status"] == "skipped"
    assert any(w.startswith("no reference model: no counterfactual") for w in r.warnings)
    assert r.verdict in ("leaky", "unknown")
