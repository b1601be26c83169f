"""Renderings of scan results: console text, JSON, JSON lines, a self-contained HTML report, SARIF 2.1.0.

Each renderer takes result records (``ScanResult.to_json()`` dicts, or error/skip records of a hub scan)
so that reports can be rebuilt later from a hub scan's ``results.jsonl`` without rescanning.
"""
from __future__ import annotations

import base64
import html
import json

from eebguard.records import printable

FORMATS = ("console", "json", "jsonl", "html", "sarif")
EXTENSIONS = {"console": "txt", "json": "json", "jsonl": "jsonl", "html": "html", "sarif": "sarif"}


def _pct(v) -> str:
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
    soft = (f"judged soft reach {_pct(audit.get('judged_soft_reach'))}" if audit.get("judged_soft_reach") is not None
            else f"soft reach {_pct(residual_share(audit.get('soft_reach')))} of a retained concept's")
    return (f"erasure audit: name {_pct(audit.get('name_reach'))}, random words up to "
            f"{_pct(audit.get('word_probe_max'))}, {soft}; shared leaks: {shared}")


def moved_note(r: dict) -> str | None:
    """The text encoder's tokens moved toward the concept, where it differs from the counterfactual's."""
    moved = r.get("text_encoder_moved") or []
    if not moved:
        return None
    toks = ", ".join(f"{t['token']!r} {t['score']:.2f}" for t in moved)
    return (f"text encoder changed: tokens moved toward {r['concept']!r}: {toks} "
            "(log distance ratio to the counterfactual's encoding, 0 = unmoved)")


def _p(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _where(loc: dict) -> str | None:
    where = loc.get("component")
    if where == "cross_attention_kv" and loc.get("top_layer"):  # a layer only names a K/V location
        where = f"{where} ({loc['top_layer']})"
    return where


def console(records: list[dict]) -> str:
    """A few lines per model; every line passes ``printable``, so a file name or a token cannot forge lines
    or send terminal escapes."""
    lines = []
    for r in records:
        try:
            lines += _console_record(r)
        except Exception as exc:  # noqa: BLE001 - a record is untrusted input (a results.jsonl edited by hand)
            lines.append(f"{'?':8} {r.get('source') if isinstance(r, dict) else '?'}: record not renderable "
                         f"({type(exc).__name__})")
    return "\n".join(printable(line) for line in lines)


def _console_record(r: dict) -> list[str]:
    lines = []
    if r.get("status") in ("error", "skipped"):
        lines.append(f"{r['status'].upper():8} {r.get('source')}: {r.get('reason')}")
        return lines
    loc = r.get("location", {}) or {}
    by = f" ({r['tampered_by']})" if r.get("tampered_by") else ""
    lines.append(f"{r['verdict'].upper():8} {r['source']}  concept={r['concept']}  p_live={_p(r.get('p_live'))}  "
                 f"p_tampered={_p(r.get('p_tampered'))}{by}")
    lines.append(f"         {counterfactual_note(r.get('counterfactual'))}")
    if r.get("triggers"):
        t = r["triggers"][0]
        where = _where(loc)
        lines.append(f"         {trigger_note(t)}" + (f"; location {where}" if where else ""))
    moved = moved_note(r)
    if moved:
        lines.append(f"         {moved}")
    note = audit_note(r.get("erasure_audit"))
    if note:
        lines.append(f"         {note}")
    for w in r.get("warnings", []):
        lines.append(f"         warning: {w}")
    return lines


def as_json(records: list[dict]) -> str:
    return json.dumps(records[0] if len(records) == 1 else records, indent=2)


def as_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


# ---- HTML ------------------------------------------------------------------------------------------


def _img(rgb, scale: int = 6, title: str = "") -> str:
    """An ``<img>`` of ``rgb[y][x] = (r, g, b)`` in [0, 1], each pixel ``scale`` pixels wide (PNG, Pillow)."""
    import io

    import numpy as np
    from PIL import Image

    arr = (np.clip(np.asarray(rgb, dtype=np.float64), 0, 1) * 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB").resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{html.escape(title)}" title="{html.escape(title)}" src="data:image/png;base64,{data}">'


def _heat(m) -> list:
    lo = min(min(r) for r in m)
    hi = max(max(r) for r in m)
    span = (hi - lo) or 1.0
    return [[((v - lo) / span, 0.2, 1 - (v - lo) / span) for v in row] for row in m]


def _images_html(images: list) -> str:
    return "".join(_img(im, scale=6) for im in images)


def html_report(records: list[dict], title: str = "eebguard scan report") -> str:
    css = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:.3em .6em}.backdoor{color:#fff;background:#b00020}"
           ".tampered{color:#fff;background:#e65100}.leaky{color:#000;background:#f9a825}"
           ".clean{color:#fff;background:#1b5e20}.unknown,.error,.skipped{background:#999;color:#fff}"
           ".verdict{font-size:1.6em;padding:.2em .6em;display:inline-block}.bar{background:#b00020;height:.8em}"
           ".grid img{image-rendering:pixelated;display:block;margin:.3em 0}.rows{font-size:.85em;color:#555}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1>"]
    for r in records:
        try:
            parts.append(_html_record(r))
        except Exception as exc:  # noqa: BLE001 - one odd record must not cost the report
            src = html.escape(printable(r.get("source") if isinstance(r, dict) else "?"))
            parts.append(f"<section><h2>{src}</h2><div class='verdict unknown'>NOT RENDERED</div>"
                         f"<p>this record could not be rendered ({html.escape(type(exc).__name__)}); "
                         "see results.jsonl</p></section>")
    parts.append("</body></html>")
    return "".join(parts)


def _html_record(r: dict) -> str:
    parts = []
    src = html.escape(printable(r.get("source")))
    if r.get("status") in ("error", "skipped"):
        return (f"<section><h2>{src}</h2><div class='verdict {html.escape(str(r['status']))}'>"
                f"{html.escape(str(r['status']).upper())}</div><p>{html.escape(printable(r.get('reason')))}</p></section>")
    v = html.escape(str(r["verdict"]))
    by = f" ({html.escape(r['tampered_by'])})" if r.get("tampered_by") else ""
    parts.append(f"<section><h2>{src}</h2><div class='verdict {v}'>{v.upper()}</div>"
                 f"<p>Erased concept <b>{html.escape(str(r['concept']))}</b>: P(live backdoor) = <b>{_p(r.get('p_live'))}</b>, "
                 f"P(tampered) = <b>{_p(r.get('p_tampered'))}</b>{by} (threshold {r['threshold']}).</p>"
                 f"<p>{html.escape(counterfactual_note(r.get('counterfactual')))}</p>")
    moved = moved_note(r)
    if moved:
        parts.append(f"<p><b>Text encoder:</b> {html.escape(moved)}</p>")
    for t in r.get("triggers") or []:
        parts.append(f"<h3>Trigger <code>{html.escape(str(t.get('text')))}</code></h3>"
                     f"<p>{html.escape(trigger_note(t))}; tokens {html.escape(' '.join(str(x) for x in t.get('tokens') or []))}; "
                     f"contrastive score reach {t.get('score_reach')}</p>")
        if t.get("grid"):
            grid = str(t["grid"])
            if grid.startswith("data:image/png;base64,"):  # a record is untrusted input: only our own PNGs
                parts.append(f"<div class='grid'><p class='rows'>same seeds: suspect (top row), counterfactual "
                             f"(bottom row); red frame = judged as {html.escape(str(r['concept']))}</p>"
                             f"<img alt='demonstration grid' src='{html.escape(grid)}'></div>")
    note = audit_note(r.get("erasure_audit"))
    if note:
        parts.append(f"<p><b>Erasure audit</b> (how leaky the erasure is; not a backdoor verdict): {html.escape(note)}</p>")
    loc = r.get("location") or {}
    if loc.get("drops"):
        parts.append(f"<h3>Localisation: {html.escape(str(loc.get('component')))}</h3><table>"
                     "<tr><th>reverted to the counterfactual</th><th>reach drop</th><th></th></tr>")
        rows = list(loc["drops"].items()) + [(f"attn2 {k}", v) for k, v in (loc.get("layer_drops") or {}).items()]
        for k, d in rows:
            w = max(0.0, min(1.0, d)) * 20
            parts.append(f"<tr><td>{html.escape(k)}</td><td>{d:.3f}</td><td><div class='bar' style='width:{w:.1f}em'></div></td></tr>")
        parts.append("</table>")
    maps = (r.get("evidence") or {}).get("attention_maps", {}).get("maps")
    if maps:
        parts.append("<h3>Cross-attention maps (mean over layers and steps), tokens 0-7</h3>")
        for which in ("trigger", "name"):
            parts.append(f"<p>{which} prompt: " + "".join(_img(_heat(m), 8, f"{which} token {i}") for i, m in enumerate(maps[which])) + "</p>")
    imgs = r.get("images") or {}
    for which, ims in imgs.items():
        parts.append(f"<h3>Generated under the {html.escape(which)}</h3><p>{_images_html(ims)}</p>")
    parts.append("</section>")
    return "".join(parts)


# ---- SARIF -----------------------------------------------------------------------------------------


RULES = {"backdoor": ("EEB001", "error"), "tampered": ("EEB003", "warning"), "leaky": ("EEB002", "note"),
         "unknown": ("EEB004", "note")}


def sarif(records: list[dict], tool_version: str) -> dict:
    """SARIF 2.1.0: one result per model that is not clean (backdoor: error, tampered: warning, leaky and
    unknown: note) and per scan error."""
    results, artifacts = [], []
    for r in records:
        ident = r.get("identity") or {}
        where = f"{r.get('source')}@{ident.get('revision') or (ident.get('digest') or '')[:12]}"
        # every model scanned, clean ones too: what was read of it (the coverage ledger) and at which revision
        artifacts.append({"location": {"uri": str(r.get("source"))}, "roles": ["analysisTarget"],
                          **({"hashes": {"sha-256": ident["digest"]}} if ident.get("digest") else {}),
                          "properties": {"revision": ident.get("revision"), "kind": ident.get("kind"),
                                         "verdict": r.get("verdict") or r.get("status"), "reference": r.get("reference"),
                                         "coverage": ident.get("coverage") or [],
                                         "scanners": {n: st.get("status") for n, st in
                                                      ((r.get("evidence") or {}).get("scanners") or {}).items()}}})
        if r.get("status") in ("error", "skipped"):
            results.append({"ruleId": "EEB000", "level": "warning" if r["status"] == "error" else "none",
                            "message": {"text": f"{r['status']}: {r.get('reason')}"},
                            "locations": [{"logicalLocations": [{"fullyQualifiedName": where, "kind": "module"}]}]})
            continue
        if r["verdict"] not in RULES:
            continue
        rule, level = RULES[r["verdict"]]
        loc = r.get("location") or {}
        comp = loc.get("tampered_component") or loc.get("component") or "model"
        trig = r["triggers"][0] if r.get("triggers") else None
        text = {"backdoor": f"erased concept {r['concept']!r} comes back through a hidden trigger"
                            + (f": {trigger_note(trig)}" if trig else f" (p_live={_p(r.get('p_live'))})"),
                "tampered": f"model edited toward the erased concept {r['concept']!r} beyond the clean counterfactual "
                            f"(p_tampered={_p(r.get('p_tampered'))}, {r.get('tampered_by')})",
                "leaky": audit_note(r.get("erasure_audit")) or "the erasure leaks",
                "unknown": "nothing could be measured: " + "; ".join(r.get("warnings") or [])}[r["verdict"]]
        results.append({
            "ruleId": rule, "level": level, "message": {"text": text},
            "locations": [{"logicalLocations": [{"fullyQualifiedName": f"{where}/{comp}", "kind": "module"}]}],
            "properties": {"p_live": r.get("p_live"), "p_tampered": r.get("p_tampered"),
                           "trigger": trig["text"] if trig else None, "demonstrated": bool(trig and trig.get("demonstrated")),
                           "layer": loc.get("top_layer"), "counterfactual": r.get("counterfactual")},
        })
    rules = [{"id": "EEB001", "name": "ErasureEvasionBackdoor",
              "shortDescription": {"text": "erased concept brought back by a trigger the clean counterfactual does not answer"}},
             {"id": "EEB003", "name": "TamperedTowardErasedConcept",
              "shortDescription": {"text": "model edited toward the erased concept beyond the clean counterfactual"}},
             {"id": "EEB002", "name": "LeakyErasure",
              "shortDescription": {"text": "the erased concept comes back through paths the counterfactual shares"}},
             {"id": "EEB004", "name": "Unmeasured", "shortDescription": {"text": "the scan could not measure the model"}},
             {"id": "EEB000", "name": "ScanError", "shortDescription": {"text": "model could not be scanned"}}]
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "eebguard", "version": tool_version, "informationUri": "https://arxiv.org/abs/2504.21072",
                            "rules": rules}},
        "artifacts": artifacts, "results": results}]}


def render(fmt: str, records: list[dict]) -> str:
    from eebguard import __version__

    if fmt == "console":
        return console(records)
    if fmt == "json":
        return as_json(records)
    if fmt == "jsonl":
        return as_jsonl(records)
    if fmt == "html":
        return html_report(records)
    if fmt == "sarif":
        return json.dumps(sarif(records, __version__), indent=2)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
