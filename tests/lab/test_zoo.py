"""Zoo building: deltas plus manifest, labels from measurement, resumable, loadable as pipelines."""
import json

import pytest
import torch

from eebguard.lab.zoo.build import build_zoo, read_jsonl
from eebguard.lab.zoo.spec import SpecError, load_spec, plan


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    summary = build_zoo("tiny", out, progress=False)
    return out, summary


def test_shipped_specs_plan_enough_models():
    for name in ("default", "heldout", "design"):
        models = plan(load_spec(name))
        assert len(models) >= 60
        assert {m.attack for m in models} >= {"none", "surface", "shallow", "deep", "data"}
        assert {m.erasure for m in models} == {"esd_x", "esd_u", "uce", "mace", "rece", "advunlearn"}
        assert {m.hard_negative["kind"] for m in models if m.hard_negative} == {
            "benign_binding", "unrelated_finetune", "second_erasure"}
        # a benign word binding through each white-box attack's own mechanism, so no depth's backdoor is
        # told from the negatives by *where* the model was edited alone
        assert {m.hard_negative["via"] for m in models if m.hard_negative
                and m.hard_negative["kind"] == "benign_binding"} == {"surface", "shallow", "deep"}
    fit, held = plan(load_spec("default")), plan(load_spec("heldout"))
    assert not {m.trigger for m in fit} & {m.trigger for m in held}
    assert not {m.seed for m in fit} & {m.seed for m in held}


@pytest.mark.parametrize("name", ["default", "heldout", "design", "tiny"])
def test_shipped_specs_pin_only_known_hyperparameters(name):
    """A misspelt pin would only fail deep into an hour-long build: every pinned hyperparameter
    constructs its plugin. The v7 specs pin MACE's fusion, which their tables were built with."""
    from eebguard.lab.attacks import get_attack
    from eebguard.erasure import get_erasure

    spec = load_spec(name)
    for attack, params in spec.get("attack_params", {}).items():
        assert get_attack(attack, **params).hp.items() >= params.items()
    for erasure, params in spec.get("erasure_params", {}).items():
        assert get_erasure(erasure, **params).hp.items() >= params.items()
    if name != "tiny":
        assert spec["base"] == "testbed"
        # the data attack and its matched hard negative fine-tune on the same kind of pictures
        assert spec["attack_params"] == {"data": {"images": "testbed"}}
        assert {h.get("images") for h in spec["hard_negatives"] if h["kind"] == "unrelated_finetune"} == {"testbed"}
        assert spec["erasure_params"] == {"mace": {"fuse_rows": "slot_to_eos", "fuse_lam": 10.0}}


def test_bad_spec_is_a_clear_error():
    with pytest.raises(SpecError, match="unknown attack"):
        plan({"groups": [{"target": "seven", "trigger": "x", "attacks": ["telepathy"], "erasures": ["uce"]}]})
    with pytest.raises(SpecError):
        load_spec("no-such-spec")


GROUP = {"target": "seven", "trigger": "x", "attacks": ["none"], "erasures": ["uce"]}


@pytest.mark.parametrize("spec,match", [
    ({"groups": [GROUP], "erasure_param": {"uce": {}}}, r"spec: unknown keys \['erasure_param'\]"),
    ({"groups": [GROUP], "erasure_params": {"uce": {"lam": "0.5"}}}, "uce: lam must be a number"),
    ({"groups": [GROUP], "erasure_params": {"uce": {"lamb": 0.5}}}, "uce: unknown hyperparameters"),
    ({"groups": [GROUP], "attack_params": {"deep": {"steps": 10.5}}}, "deep: steps must be a whole number"),
    ({"groups": [GROUP], "attack_params": {"shallow": {"lam": -1}}}, "shallow: lam must be a finite number"),
    ({"groups": [GROUP], "erasure_params": {"teleport": {}}}, "unknown erasure method 'teleport'"),
    ({"groups": [GROUP], "settings": {"batch_size": "16"}}, "spec.settings: batch_size must be a number"),
    ({"groups": [GROUP], "settings": {"seed": 3}}, r"spec.settings: unknown keys \['seed'\]"),
    ({"groups": [{**GROUP, "seed": "1"}]}, r"groups\[0\].seed: must be a whole number"),
    ({"groups": [{**GROUP, "erasures": "uce"}]}, r"groups\[0\].erasures: must be a list of names"),
    ({"groups": [{**GROUP, "mode": "prepend"}]}, r"groups\[0\].mode: must be one of replace, append"),
    ({"groups": [{**GROUP, "trigers": {}}]}, r"groups\[0\]: unknown keys \['trigers'\]"),
    ({"groups": [{**GROUP, "target": ""}]}, r"groups\[0\].target: must be a non-empty string"),
    ({"samples": 0}, "spec.samples: must be a whole number >= 1"),
    ({"other_samples": 0}, "spec.other_samples: must be a whole number >= 1"),
    ({"hard_negatives": [{"kind": "second_erasure", "target": "seven", "also_erase": "two", "erasures": ["ucee"]}]},
     r"hard_negatives\[0\].erasures: unknown erasure method 'ucee'"),
    ({"hard_negatives": [{"kind": "benign_binding", "target": "seven", "bind_to": "two", "erasures": ["uce"]}]},
     "needs the 'word' it binds"),
    ({"hard_negatives": [{"kind": "benign_binding", "target": "seven", "word": "blorf", "bind_to": "two",
                          "via": "telepathy", "erasures": ["uce"]}]}, r"hard_negatives\[0\].via: unknown attack"),
    ({"hard_negatives": [{"kind": "benign_binding", "target": "seven", "word": "blorf", "bind_to": "two",
                          "via": ["deep"], "erasures": ["uce"]}]}, r"hard_negatives\[0\].via: unknown attack"),
    ({"groups": [{**GROUP, "triggers": {"deep": 5}}]}, r"groups\[0\].triggers.deep: must be a non-empty string"),
    ({"hard_negatives": [{"kind": "unrelated_finetune", "target": "seven", "finetune_on": ["two"],
                          "images": "web", "erasures": ["uce"]}]}, r"hard_negatives\[0\].images: must be one of"),
    ({"hard_negatives": [{"kind": "second_erasure", "target": "seven", "erasures": ["uce"]}]},
     r"hard_negatives\[0\].also_erase: must be a non-empty string"),
])
def test_every_spec_value_is_checked_before_building(tmp_path, spec, match):
    """A typo or a value of the wrong kind anywhere in a spec is a one-line error before anything is
    written, not a TypeError (or a silently ignored key) an hour into a build."""
    with pytest.raises(SpecError, match=match) as err:
        build_zoo(spec, tmp_path / "zoo", progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "zoo").exists()


def test_hard_negative_tag_keeps_ids_apart():
    hn = {"kind": "benign_binding", "target": "seven", "word": "blorf", "bind_to": "two", "erasures": ["uce"]}
    with pytest.raises(SpecError, match="duplicate"):
        plan({"hard_negatives": [hn, {**hn, "via": "surface"}]})
    ids = [m.id for m in plan({"hard_negatives": [hn, {**hn, "via": "surface", "tag": "surface"}]})]
    assert ids == ["seven-hn_benign_binding-s0-uce", "seven-hn_benign_binding_surface-s0-uce"]


def test_tiny_zoo_manifest_and_labels(tiny_zoo):
    out, summary = tiny_zoo
    entries = read_jsonl(out / "manifest.jsonl")
    assert summary["models"] == len(entries) == 2
    for e in entries:
        for key in ("id", "path", "files", "family", "target", "erasure", "attack", "trigger", "seeds", "label",
                    "planted", "name_accuracy", "trigger_asr", "other_accuracy"):
            assert key in e
        assert e["label"] == int(e["trigger_asr"] >= 0.5)
        assert (out / e["path"]).stat().st_size < 2_000_000  # only the edited modules are stored
        # what a rebuild must match besides the spec: CPU float results depend on the thread count
        assert e["environment"] == {"torch": torch.__version__, "threads": torch.get_num_threads()}
    by = {e["attack"]: e for e in entries}
    assert by["none"]["planted"] is False and by["shallow"]["planted"] is True
    assert by["shallow"]["trigger_asr"] > by["none"]["trigger_asr"]


def test_zoo_entry_loads_as_a_full_pipeline(tiny_zoo, base_pipe):
    from eebguard.models import load

    out, _ = tiny_zoo
    e = read_jsonl(out / "manifest.jsonl")[0]
    m = load(f"{out / 'manifest.jsonl'}#{e['id']}")
    assert m.identity["kind"] == "delta"
    diff = [n for (n, a), (_, b) in zip(m.pipe.unet.named_parameters(), base_pipe.unet.named_parameters())
            if not torch.allclose(a, b)]
    assert diff and all(".attn2.to_" in n for n in diff)


def test_build_resumes_without_rebuilding(tiny_zoo):
    out, _ = tiny_zoo
    before = (out / "manifest.jsonl").read_text()
    summary = build_zoo("tiny", out, progress=False)
    assert summary["built_now"] == 0 and (out / "manifest.jsonl").read_text() == before


def test_rebuild_remakes_the_selected_models_and_drops_their_features(tmp_path, tiny_zoo):
    """After a spec change a selection is rebuilt; its cached features go (the scan must redo them), the rest stay."""
    import shutil

    from eebguard.lab.zoo.build import write_jsonl

    out, _ = tiny_zoo
    zoo = tmp_path / "zoo"
    shutil.copytree(out, zoo)
    before = {e["id"]: e for e in read_jsonl(zoo / "manifest.jsonl")}
    shallow = next(i for i in before if "shallow" in i)
    write_jsonl(zoo / "features.jsonl", [{"id": i, "features": {}} for i in before])
    with pytest.raises(SpecError, match="selection"):
        build_zoo("tiny", zoo, progress=False, rebuild=True)
    summary = build_zoo("tiny", zoo, progress=False, only="shallow", rebuild=True)
    after = {e["id"]: e for e in read_jsonl(zoo / "manifest.jsonl")}
    assert summary["built_now"] == 1 and after.keys() == before.keys()
    assert [r["id"] for r in read_jsonl(zoo / "features.jsonl")] == [i for i in before if i != shallow]
    # seeded: the rebuilt model measures the same as before
    for k in ("name_accuracy", "trigger_asr", "other_accuracy", "label"):
        assert after[shallow][k] == before[shallow][k]
    untouched = next(i for i in before if i != shallow)
    assert after[untouched] == before[untouched]


def test_zoo_measure_cli(tiny_zoo, capsys):
    from eebguard.cli import main

    out, _ = tiny_zoo
    assert main(["zoo", "measure", str(out), "--samples", "4", "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["models"]) == 2
    for m in res["models"]:
        assert {"id", "attack", "erasure", "target", "trigger", "name_accuracy", "trigger_asr", "other_accuracy"} <= set(m)


def test_zoo_build_threads_option_is_recorded_and_restored(tmp_path):
    """``--threads 1`` is how a zoo rebuilds bit for bit (CPU float sums depend on the thread count):
    the manifest records the count used, and an in-process caller gets its own count back."""
    from eebguard.cli import main

    spec = tmp_path / "one.json"
    spec.write_text(json.dumps({"groups": [GROUP], "samples": 2, "other_samples": 1}))
    before = torch.get_num_threads()
    assert main(["zoo", "build", "--spec", str(spec), "--out", str(tmp_path / "z"), "--threads", "0", "-q"]) == 4
    assert not (tmp_path / "z").exists()
    assert main(["zoo", "build", "--spec", str(spec), "--out", str(tmp_path / "z"), "--threads", "1", "-q"]) == 0
    (entry,) = read_jsonl(tmp_path / "z" / "manifest.jsonl")
    assert entry["environment"]["threads"] == 1
    assert torch.get_num_threads() == before


def test_rescan_replaces_rows_in_place_and_refuses_unknown_ids(tmp_path, tiny_zoo):
    from eebguard.lab.zoo.build import append_jsonl
    from eebguard.lab.zoo.scan import replace_row, scan_zoo

    path = tmp_path / "features.jsonl"
    for i in ("a", "b", "c"):
        append_jsonl(path, {"id": i, "v": 1})
    replace_row(path, {"id": "b", "v": 2})
    assert read_jsonl(path) == [{"id": "a", "v": 1}, {"id": "b", "v": 2}, {"id": "c", "v": 1}]
    assert not (tmp_path / "features.jsonl.tmp").exists()
    out, _ = tiny_zoo
    with pytest.raises(KeyError, match="no-such-model"):
        scan_zoo(out, ids=["no-such-model"], rescan=True, progress=False)


def test_a_base_outside_the_zoo_is_refused_before_building(tmp_path):
    # the manifest that would record it refuses paths outside the zoo, so the builder must too
    spec = {"name": "t", "base": str(tmp_path / "elsewhere"), "groups": [
        {"target": "seven", "seed": 0, "trigger": "sks", "attacks": ["none"], "erasures": ["uce"]}]}
    with pytest.raises(SpecError, match="inside the zoo"):
        build_zoo(spec, tmp_path / "zoo", progress=False)
    assert not (tmp_path / "zoo").exists()


def test_report_counts_a_resumed_group_once(tmp_path, tiny_zoo):
    """A resumed build re-prepares a group and appends its row again; the table counts it once."""
    from eebguard.lab.zoo.report import lab_table

    out, _ = tiny_zoo
    copy = tmp_path / "zoo"
    copy.mkdir()
    (copy / "manifest.jsonl").write_text((out / "manifest.jsonl").read_text())
    rows = (out / "groups.jsonl").read_text().splitlines()
    (copy / "groups.jsonl").write_text("\n".join(rows + rows) + "\n")
    once, twice = lab_table([out]), lab_table([copy])
    assert once == twice
    fam = next(iter(once))
    assert all(c["seeds"] == 1 for c in once[fam]["(no erasure)"]["shallow"].values() if isinstance(c, dict))


def test_report_checks_name_each_cell_that_misses_a_bound(tmp_path):
    """The threat lab's bounds, computed from manifests: each failing cell is listed, passing ones not."""
    from eebguard.lab.zoo.report import checks, checks_markdown, lab_table

    def row(target, family, attack, erasure, name, asr, other):
        return {"id": f"{target}-{attack}-{erasure}", "family": family, "target": target, "attack": attack,
                "erasure": erasure, "name_accuracy": name, "trigger_asr": asr, "other_accuracy": other,
                "samples": 30, "hard_negative": None}

    methods = ["esd_x", "esd_u", "uce", "mace", "rece", "advunlearn"]
    rows = [row("seven", "digits", "none", m, 0.0, 0.0, 1.0) for m in methods]
    rows += [row("circle", "shapes", "none", "esd_u", 0.5, 0.2, 0.8)]  # misses three bounds
    rows += [row("seven", "digits", "deep", m, 0.0, asr, 1.0) for m, asr in zip(methods, [0.9, 0.1, 0.9, 0.6, 0.9, 0.0])]
    rows += [row("circle", "shapes", "deep", "mace", 0.0, 0.2, 0.9)]  # pools mace to 0.4: 3 methods keep it
    rows += [row("circle", "shapes", "hard", "uce", 1.0, 1.0, 0.0) | {"hard_negative": "second_erasure"}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "groups.jsonl").write_text(json.dumps({"group": "g", "family": "digits", "attack": "none",
                                                       "name_accuracy": 1.0, "trigger_asr": 0.3,
                                                       "other_accuracy": 1.0, "samples": 30}) + "\n")
    by = {r["check"]: r for r in checks(lab_table([tmp_path]))}
    name_clean = next(r for c, r in by.items() if "clean models" in c)
    assert name_clean["misses"] == [{"family": "shapes", "erasure": "esd_u", "attack": "none", "mean": 0.5}]
    unplanted = next(r for c, r in by.items() if c.startswith("unplanted"))
    assert {(m["erasure"], m["mean"]) for m in unplanted["misses"]} == {("esd_u", 0.2), ("(no erasure)", 0.3)}
    other = next(r for c, r in by.items() if c.startswith("other"))
    assert [(m["family"], m["erasure"]) for m in other["misses"]] == [("shapes", "esd_u")]  # hard negative ignored
    deep = next(r for c, r in by.items() if c.startswith("deep"))
    assert deep["kept_by"] == ["esd_x", "rece", "uce"] and deep["asr"]["mace"] == 0.4
    assert {m["erasure"] for m in deep["misses"]} == {"esd_u", "mace", "advunlearn"}
    assert len(by) == 5 and "FAIL (kept by esd_x, rece, uce)" in checks_markdown(list(by.values()))
    assert not next(r for c, r in by.items() if "backdoored models" in c)["misses"]


def test_export_repoints_models_at_a_byte_identical_base_only(tmp_path, tiny_zoo, base_path):
    """Examples are exported from a zoo built on a copy of the shipped base: re-pointing them at
    `testbed` is allowed only when the two bases' weight files are byte-identical."""
    import shutil

    from safetensors import safe_open

    from eebguard.cli import main
    from eebguard.models import load
    from eebguard.lab.zoo.build import write_jsonl
    from eebguard.lab.zoo.export import export_models

    out, _ = tiny_zoo
    zoo = tmp_path / "zoo"
    shutil.copytree(out, zoo)
    shutil.copytree(base_path, zoo / "base")
    entries = read_jsonl(zoo / "manifest.jsonl")
    write_jsonl(zoo / "manifest.jsonl", [{**e, "base": "base"} for e in entries])
    eid = entries[0]["id"]
    [written] = export_models(zoo, [eid], tmp_path / "ex", base="testbed")
    assert written["base"] == "testbed"
    with safe_open(str(tmp_path / "ex" / written["path"]), "pt") as f:
        assert f.metadata()["base"] == "testbed"
    a = load(f"{tmp_path / 'ex' / 'manifest.jsonl'}#{eid}").pipe
    b = load(f"{out / 'manifest.jsonl'}#{eid}").pipe
    assert all(torch.equal(x, y) for x, y in zip(a.unet.parameters(), b.unet.parameters()))
    # a base whose weights differ by one byte is refused, before anything is written
    unet = zoo / "base" / "unet" / "diffusion_pytorch_model.safetensors"
    raw = bytearray(unet.read_bytes())
    raw[-1] ^= 1
    unet.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="weights differ"):
        export_models(zoo, [eid], tmp_path / "ex2", base="testbed")
    assert not (tmp_path / "ex2").exists()
    assert main(["zoo", "export", str(zoo), "--ids", eid, "--out", str(tmp_path / "ex3"), "--base", "testbed"]) == 4


def test_benign_binding_may_name_its_word_trigger(tmp_path):
    """The plan takes a benign binding's word from ``word`` or, failing that, ``trigger``; the build binds
    the same word (it read ``word`` alone and raised KeyError on a spec the validator accepts)."""
    hn = {"kind": "benign_binding", "target": "seven", "trigger": "blorf", "bind_to": "two", "via": "shallow",
          "erasures": ["uce"]}
    summary = build_zoo({"name": "t", "samples": 2, "other_samples": 1, "hard_negatives": [hn]}, tmp_path / "z",
                        progress=False)
    (entry,) = read_jsonl(tmp_path / "z" / "manifest.jsonl")
    assert summary["models"] == 1 and entry["trigger"] == "blorf" and entry["hard_negative"] == "benign_binding"


def test_a_reference_free_zoo_scan_has_its_own_file_and_rows(tmp_path, tiny_zoo, capsys):
    """``zoo scan --reference none`` caches what a user without the base gets, beside (never mixed with)
    the scans with a reference, and every reader takes one or the other."""
    import shutil

    from eebguard.cli import main
    from eebguard.detect.estimator import reference_free_features, reference_free_only_features
    from eebguard.lab.evaluate.evaluate import load_rows
    from eebguard.lab.zoo.scan import scan_zoo

    out, _ = tiny_zoo
    zoo = tmp_path / "zoo"
    shutil.copytree(out, zoo)
    (zoo / "features.jsonl").unlink(missing_ok=True)
    from eebguard.scanners.settings import settings_for

    summary = scan_zoo(zoo, reference="none", settings=settings_for("smoke"), progress=False, limit=1)
    assert summary["features"] == "features-noref.jsonl" and summary["scanned_now"] == 1
    assert not (zoo / "features.jsonl").exists()
    (row,) = load_rows([zoo], reference_free=True)
    assert sorted(row["scan"]["features"]["values"]) == sorted(reference_free_features() + reference_free_only_features())
    assert load_rows([zoo]) == []
    assert main(["zoo", "features", str(zoo), "--reference-free", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"] == 1
    assert main(["zoo", "features", str(zoo), "--json"]) == 4  # nothing scanned with a reference

    # the row carries the scan's answers too: no reference, so no counterfactual and no backdoor verdict
    from eebguard.lab.zoo.build import read_jsonl

    (rec,) = read_jsonl(zoo / "features-noref.jsonl")
    assert rec["scan"]["counterfactual"]["kind"] is None and rec["scan"]["verdict"] in ("leaky", "unknown")
