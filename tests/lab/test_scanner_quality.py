"""Scanner-quality tables: recovery and localisation rates from recorded scan evidence."""
import pytest

from eebguard.lab.evaluate.scanner_quality import markdown, recovery_rates
from eebguard.testbed.tokenizer import load_tokenizer


def _row(attack, trigger, recovered, label=1, drops=None):
    tok = load_tokenizer()
    trig = [{"ids": t if isinstance(t, list) else tok(t, add_special_tokens=False).input_ids} for t in recovered]
    return {"attack": attack, "trigger": trigger, "planted": attack != "none", "label": label,
            "scan": {"features": {"evidence": {"hard_trigger": {"triggers": trig},
                                               "localisation": {"drops": drops or {}}}}}}


def test_recovery_rates_count_exact_top3_and_first_piece():
    tok = load_tokenizer()
    assert tok("tkwx", add_special_tokens=False).input_ids == [22344, 3561]  # tk + wx</w>
    kv = {"text_encoder": 0.0, "cross_attention_kv": 0.9, "unet_other": 0.0}
    rows = [
        _row("shallow", "tkwx", ["tkwx"], drops=kv),                  # exact
        _row("shallow", "tkwx", [[22344, 43613], "tkwx"], drops=kv),  # tk+ennes: first piece and top 3, not exact
        _row("shallow", "tkwx", ["seven"], drops={"text_encoder": 0.9, "cross_attention_kv": 0.0,
                                                  "unet_other": 0.0}),  # nothing, wrong place
        _row("shallow", "tkwx", ["tkwx"], label=0),                   # destroyed: not counted
        _row("none", "tkwx", ["tkwx"], label=0),
    ]
    r = recovery_rates(rows, tok)["shallow"]
    assert r["models"] == 3
    assert r["exact_trigger"] == 1 / 3 and r["trigger_in_top3"] == 2 / 3 and r["first_piece"] == 2 / 3
    assert r["localised"] == 2 / 3
    assert "| shallow | 3 | 0.33 | 0.67 | 0.67 | 0.67" in markdown({}, {"shallow": r})


def test_feature_auroc_positives_surviving_or_planted():
    """Survivors only by default; `planted` also counts the backdoors the erasure destroyed."""
    from eebguard.lab.evaluate.scanner_quality import feature_auroc
    from eebguard.scanners import feature_names

    name = feature_names()[0]

    def row(attack, label, value):
        r = _row(attack, "tkwx", ["tkwx"], label=label)
        r["scan"]["features"]["values"] = {name: value}
        return r

    rows = [row("none", 0, 0.0), row("none", 0, 0.1), row("surface", 1, 1.0), row("surface", 0, 0.05)]
    surviving = feature_auroc(rows)["surface"]
    planted = feature_auroc(rows, positives="planted")["surface"]
    assert (surviving["positives"], planted["positives"]) == (1, 2)
    assert surviving["features"][name]["auroc"] == 1.0
    assert planted["features"][name]["auroc"] == 0.75  # the destroyed one sits between the negatives
    with pytest.raises(ValueError, match="positives"):
        feature_auroc(rows, positives="all")
