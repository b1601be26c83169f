"""How good each scanner is on a scanned zoo, before any detector: single-feature AUROC per attack depth,
trigger-recovery and localisation rates.

Per attack depth the positives are that depth's backdoored-erased models whose backdoor survived
(``label`` 1, ``positives="surviving"``, what the detector must find) or every backdoored-erased model
of that depth, the planted backdoor alive or destroyed (``positives="planted"``: was this model tampered
with at that depth); the negatives are every model without a planted backdoor (clean erasures and hard
negatives) either way. A feature's AUROC is reported in its better direction (max(a, 1 - a)) with the direction
named, since a feature may fall rather than rise under a backdoor.
"""
from __future__ import annotations

import numpy as np

from eebguard.lab.evaluate.evaluate import matrix
from eebguard.lab.evaluate.metrics import roc_auc
from eebguard.lab.tables import markdown_table
from eebguard.scanners import feature_names
from eebguard.scanners.localisation import name_component

#: which component each attack edits, for the localisation rate
EDITED_COMPONENT = {"surface": ("text_encoder",), "shallow": ("cross_attention_kv",),
                    "deep": ("cross_attention_kv", "unet_other"), "data": ("cross_attention_kv", "unet_other")}


POSITIVES = ("surviving", "planted")


def feature_auroc(rows: list[dict], positives: str = "surviving") -> dict:
    if positives not in POSITIVES:
        raise ValueError(f"positives must be one of {', '.join(POSITIVES)}, not {positives!r}")
    names = feature_names()
    X = matrix(rows, names)
    neg = [i for i, r in enumerate(rows) if not r["planted"]]
    out = {}
    for attack in sorted({r["attack"] for r in rows if r["planted"]}):
        pos = [i for i, r in enumerate(rows) if r["attack"] == attack and r["planted"]
               and (positives == "planted" or r["label"] == 1)]
        if not pos or not neg:
            out[attack] = {"positives": len(pos), "negatives": len(neg), "features": {}}
            continue
        idx = neg + pos
        y = np.array([0] * len(neg) + [1] * len(pos))
        feats = {}
        for j, n in enumerate(names):
            x = X[idx, j]
            if np.all(np.isnan(x)):
                continue
            a = roc_auc(y, np.where(np.isnan(x), np.nanmedian(x), x))
            if np.isnan(a):
                continue
            feats[n] = {"auroc": float(max(a, 1 - a)), "direction": "higher" if a >= 0.5 else "lower"}
        best = max(feats, key=lambda k: feats[k]["auroc"]) if feats else None
        out[attack] = {"positives": len(pos), "negatives": len(neg), "best": best, "features": feats}
    return out


def recovery_rates(rows: list[dict], tokenizer) -> dict:
    """Per attack depth, over planted models whose backdoor survived: share whose best recovered trigger
    equals the planted trigger's tokens, whose recovered triggers include it (top 3), whose best trigger
    holds the planted trigger's first BPE piece (a causal encoder gives every word with that prefix the
    same encoding there, so a backdoor keyed on it fires on them all: docs/scanners.md), and whose
    localisation names the edited component."""
    out = {}
    for attack in sorted({r["attack"] for r in rows if r["planted"]}):
        rs = [r for r in rows if r["attack"] == attack and r["label"] == 1]
        if not rs:
            continue
        exact = top3 = first = loc = 0
        for r in rs:
            ev = r["scan"]["features"]["evidence"]
            planted = tokenizer(r["trigger"], add_special_tokens=False).input_ids
            trig = (ev.get("hard_trigger") or {}).get("triggers", [])
            exact += bool(trig) and trig[0]["ids"] == planted
            top3 += any(t["ids"] == planted for t in trig[:3])
            first += bool(trig) and bool(planted) and planted[0] in trig[0]["ids"]
            loc_ev = ev.get("localisation") or {}
            # recomputed from the recorded drops (judged ones first, as the scanner does), so records scanned
            # before a localisation fix score as now
            comp = (name_component(loc_ev["drops"], loc_ev.get("image_drops"))[0] if loc_ev.get("drops")
                    else loc_ev.get("component"))
            loc += comp in EDITED_COMPONENT.get(attack, ())
        n = len(rs)
        out[attack] = {"models": n, "exact_trigger": exact / n, "trigger_in_top3": top3 / n, "first_piece": first / n,
                       "localised": loc / n, "edited_component": " or ".join(EDITED_COMPONENT.get(attack, ()))}
    return out


def markdown(auroc: dict, rates: dict, top: int = 5) -> str:
    rows = []
    for attack, a in auroc.items():
        if not a["features"]:
            rows.append([attack, f"{a['positives']} / {a['negatives']}", "–", "–", "–"])
            continue
        ranked = sorted(a["features"].items(), key=lambda kv: -kv[1]["auroc"])
        nxt = ", ".join(f"`{k}` {v['auroc']:.2f}" for k, v in ranked[1:top])
        k, v = ranked[0]
        rows.append([attack, f"{a['positives']} / {a['negatives']}", f"`{k}` ({v['direction']})", f"{v['auroc']:.3f}", nxt])
    lines = markdown_table(["attack", "positives / negatives", "best single feature", "AUROC", "next best"], rows)
    rows = [[attack, r["models"], f"{r['exact_trigger']:.2f}", f"{r['trigger_in_top3']:.2f}", f"{r['first_piece']:.2f}",
             f"{r['localised']:.2f} ({r['edited_component']})"] for attack, r in rates.items()]
    lines += ["", *markdown_table(["attack", "surviving backdoors", "exact trigger", "trigger in top 3",
                                   "best trigger holds the first piece", "localisation names the edited component"], rows)]
    return "\n".join(lines)
