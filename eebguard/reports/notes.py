"""The sentences every report format shares: a trigger's demonstration, the counterfactual, the erasure
audit, a moved text encoder. Records are untrusted input (a results.jsonl can be edited by hand)."""
from __future__ import annotations


def pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def residual_share(relative: float | None) -> float | None:
    """``soft.relative`` read as a share of a retained concept's soft reach, in [0, 1] for display. The
    ratio itself is unbounded (its denominator, control minus random reach, can be near zero: 191 on the
    deep example) and stays so in ``features``; a report says "as reachable as a kept concept" at 1."""
    return None if relative is None else min(max(float(relative), 0.0), 1.0)


def counts(t: dict, side: str) -> str:
    """``k/n [lo-hi%]`` of one side of a trigger's demonstration."""
    n = t.get("images") or 0
    k = t.get(f"{side}_hits")
    ci = t.get(f"{side}_interval")
    if k is None:
        return "n/a"
    return f"{k}/{n}" + (f" [{100 * ci[0]:.0f}-{100 * ci[1]:.0f}%]" if ci else "")


def trigger_note(t: dict) -> str:
    """One line on a found trigger's demonstration on fresh seeds, suspect vs counterfactual."""
    if t.get("suspect_hits") is None:
        return f"trigger {t['text']!r}: not re-judged (no judge for the concept)"
    what = ("demonstrated" if t.get("demonstrated") else
            "natural (the un-erased reference answers it too)" if t.get("natural") else "not demonstrated")
    ref = f", reference {t['reference_hits']}/{t['images']}" if t.get("reference_hits") is not None else ""
    return (f"trigger {t['text']!r}: {what}: suspect {counts(t, 'suspect')}, "
            f"counterfactual {counts(t, 'counterfactual')}{ref}")


def counterfactual_note(cf: dict | None) -> str:
    if not cf or not cf.get("kind"):
        return "counterfactual: none (no reference)"
    if cf["kind"] == "reference":
        return "counterfactual: the un-erased reference" + (f" ({cf['reason']})" if cf.get("reason") else "")
    how = "claimed" if cf.get("claimed") else "picked"
    also = f" with {', '.join(cf['also_erased'])}" if cf.get("also_erased") else ""
    fit = f", weight-change fit {cf['fit']:.2f}" if cf.get("fit") is not None else ""
    return f"counterfactual: the reference erased with {cf['method']}{also} ({how}{fit})"


def audit_note(audit: dict | None) -> str | None:
    """The erasure audit in one line: how leaky the erasure is (never a backdoor verdict)."""
    if not audit:
        return None
    leaks = audit.get("shared_leaks") or []
    shared = (", ".join(f"{x['text']!r}" for x in leaks[:3]) + " (the counterfactual or the base answers too)"
              if leaks else "none found")
    soft = (f"judged soft reach {pct(audit.get('judged_soft_reach'))}" if audit.get("judged_soft_reach") is not None
            else f"soft reach {pct(residual_share(audit.get('soft_reach')))} of a retained concept's")
    return (f"erasure audit: name {pct(audit.get('name_reach'))}, random words up to "
            f"{pct(audit.get('word_probe_max'))}, {soft}; shared leaks: {shared}")


def moved_note(r: dict) -> str | None:
    """The text encoder's tokens moved toward the concept, where it differs from the counterfactual's."""
    moved = r.get("text_encoder_moved") or []
    if not moved:
        return None
    toks = ", ".join(f"{t['token']!r} {t['score']:.2f}" for t in moved)
    return (f"text encoder changed: tokens moved toward {r['concept']!r}: {toks} "
            "(log distance ratio to the counterfactual's encoding, 0 = unmoved)")


def prob(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def where(loc: dict) -> str | None:
    place = loc.get("component")
    if place == "cross_attention_kv" and loc.get("top_layer"):  # a layer only names a K/V location
        place = f"{place} ({loc['top_layer']})"
    return place
