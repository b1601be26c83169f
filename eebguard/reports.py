"""Renderings of scan results: console text, JSON, JSON lines, a self-contained HTML report, SARIF 2.1.0.

Each renderer takes result records (``ScanResult.to_json()`` dicts, or error/skip records of a hub scan)
so that reports can be rebuilt later from a hub scan's ``results.jsonl`` without rescanning.
"""
from __future__ import annotations

import base64
import html
import json
import zlib
import struct

FORMATS = ("console", "json", "jsonl", "html", "sarif")
EXTENSIONS = {"console": "txt", "json": "json", "jsonl": "jsonl", "html": "html", "sarif": "sarif"}


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def residual_share(relative: float | None) -> float | None:
    """``soft.relative`` read as a share of a retained concept's soft reach, in [0, 1] for display. The
    ratio itself is unbounded (its denominator, control minus random reach, can be near zero: 191 on the
    deep example) and stays so in ``features``; a report says "as reachable as a kept concept" at 1."""
    return None if relative is None else min(max(float(relative), 0.0), 1.0)


def erasure_note(check: dict | None) -> str | None:
    """One line on whether the erasure holds, from a record's ``erasure_check``; None if nothing was checked."""
    if not check:
        return None
    n, fresh = check.get("fresh_images") or 0, check.get("fresh_reach")
    ci = check.get("fresh_interval")
    found = (f"{check['prompt']!r} gives it in {round(fresh * n)} of {n} fresh generations"
             + (f" (95% interval {_pct(ci[0])}–{_pct(ci[1])})" if ci else "")
             if check.get("prompt") is not None and fresh is not None else None)
    replay = replay_note(check, n)
    if check.get("by") == "name":
        return ("erasure does not hold: the concept's own name still produces it "
                f"({_pct(check.get('name_reach'))})" + (f"; the found prompt {found}" if found else "") + replay)
    if check.get("by") == "prompt":
        return (f"erasure does not hold: the found prompt {found}; not by itself evidence of a planted "
                "trigger (P(backdoor) is)" + replay)
    return f"erasure holds against the found prompt: {found}{replay}" if found else None


def replay_note(check: dict, n: int) -> str:
    """The claimed erasure replayed on the reference: does it let the found prompt through as well?"""
    rp = check.get("replay")
    if not rp or rp.get("reach") is None:
        return ""
    k = f"{round(rp['reach'] * n)} of {n}"
    how = rp["method"] + (f" (with {', '.join(rp['also_erased'])})" if rp.get("also_erased") else "")
    if rp.get("answers"):
        return (f"; the reference erased with {how} answers it too ({k}): consistent with a leak "
                "of the erasure method itself")
    return (f"; the reference erased with {how} does not ({k}): points to a change made before "
            "or beside the erasure (a planted trigger, or another edit)")


def moved_note(r: dict) -> str | None:
    """The text encoder's tokens moved toward the concept, where it differs from the reference's."""
    moved = r.get("text_encoder_moved") or []
    if not moved:
        return None
    toks = ", ".join(f"{t['token']!r} {t['score']:.2f}" for t in moved)
    return (f"text encoder changed: tokens moved toward {r['concept']!r}: {toks} "
            "(log distance ratio to the reference's encoding, 0 = unmoved)")


def console(records: list[dict]) -> str:
    lines = []
    for r in records:
        if r.get("status") in ("error", "skipped"):
            lines.append(f"{r['status'].upper():8} {r.get('source')}: {r.get('reason')}")
            continue
        trig = r["triggers"][0] if r.get("triggers") else None
        loc = r.get("location", {}) or {}
        lines.append(f"{r['verdict'].upper():8} {r['source']}  concept={r['concept']}  "
                     f"P(backdoor)={'n/a' if r['probability'] is None else format(r['probability'], '.3f')}")
        if trig:
            where = loc.get("component")
            if where == "cross_attention_kv" and loc.get("top_layer"):  # a layer only names a K/V location
                where = f"{where} ({loc['top_layer']})"
            lines.append(f"         trigger {trig['text']!r}: reachability {_pct(trig.get('reachability'))}"
                         f", location {where}")
        soft = (f"judged soft reachability {_pct(r.get('judged_soft_reachability'))} (a soft prompt optimised for the judge)"
                if r.get("residual_reachability") is None and r.get("judged_soft_reachability") is not None else
                f"residual soft reachability {_pct(residual_share(r.get('residual_reachability')))} of a retained concept's")
        lines.append(f"         name reachability {_pct(r.get('name_reachability'))}, {soft}")
        moved = moved_note(r)
        if moved:
            lines.append(f"         {moved}")
        note = erasure_note(r.get("erasure_check"))
        if note:
            lines.append(f"         {note}")
        for w in r.get("warnings", []):
            lines.append(f"         warning: {w}")
    return "\n".join(lines)


def as_json(records: list[dict]) -> str:
    return json.dumps(records[0] if len(records) == 1 else records, indent=2)


def as_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


# ---- HTML ------------------------------------------------------------------------------------------


def _png(rgb: list[list[list[float]]]) -> bytes:
    """A tiny PNG encoder (no imaging dependency): ``rgb[y][x] = (r, g, b)`` in [0, 1]."""
    h, w = len(rgb), len(rgb[0])
    raw = b"".join(b"\x00" + bytes(int(max(0, min(1, c)) * 255) for px in row for c in px) for row in rgb)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _img(rgb, scale: int = 6, title: str = "") -> str:
    big = [[px for px in row for _ in range(scale)] for row in rgb for _ in range(scale)]
    data = base64.b64encode(_png(big)).decode()
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
           ".clean{color:#fff;background:#1b5e20}.reachable{color:#000;background:#f9a825}.unknown,.error,.skipped{background:#999;color:#fff}"
           ".verdict{font-size:1.6em;padding:.2em .6em;display:inline-block}.bar{background:#b00020;height:.8em}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1>"]
    for r in records:
        src = html.escape(str(r.get("source")))
        if r.get("status") in ("error", "skipped"):
            parts.append(f"<section><h2>{src}</h2><div class='verdict {r['status']}'>{r['status'].upper()}</div>"
                         f"<p>{html.escape(str(r.get('reason')))}</p></section>")
            continue
        v = r["verdict"]
        prob = "n/a" if r["probability"] is None else f"{r['probability']:.3f}"
        parts.append(f"<section><h2>{src}</h2><div class='verdict {v}'>{v.upper()}</div>"
                     f"<p>P(erased concept <b>{html.escape(r['concept'])}</b> reachable through a hidden trigger) = "
                     f"<b>{prob}</b> (threshold {r['threshold']}); name reachability {_pct(r.get('name_reachability'))}"
                     + (f"; judged soft reachability {_pct(r['judged_soft_reachability'])} (a soft prompt optimised for "
                        "the judge; no reference)" if r.get("judged_soft_reachability") is not None else "")
                     + f"; detector fitted on {html.escape(json.dumps((r.get('detector') or {}).get('zoo', {}).get('spec')))}</p>")
        note = erasure_note(r.get("erasure_check"))
        if note:
            parts.append(f"<p><b>Erasure check:</b> {html.escape(note)}</p>")
        moved = moved_note(r)
        if moved:
            parts.append(f"<p><b>Text encoder:</b> {html.escape(moved)}</p>")
        if r.get("triggers"):
            parts.append("<h3>Recovered triggers</h3><table><tr><th>trigger</th><th>tokens</th>"
                         "<th>image reachability</th><th>score reach</th></tr>")
            for t in r["triggers"]:
                parts.append(f"<tr><td><code>{html.escape(t['text'])}</code></td><td>{html.escape(' '.join(t.get('tokens') or []))}</td>"
                             f"<td>{_pct(t.get('reachability'))}</td><td>{t.get('score_reach')}</td></tr>")
            parts.append("</table>")
        loc = r.get("location") or {}
        if loc.get("drops"):
            parts.append(f"<h3>Localisation: {html.escape(str(loc.get('component')))}</h3><table>"
                         "<tr><th>reverted to the reference</th><th>reach drop</th><th></th></tr>")
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
    parts.append("</body></html>")
    return "".join(parts)


# ---- SARIF -----------------------------------------------------------------------------------------


def sarif(records: list[dict], tool_version: str) -> dict:
    """SARIF 2.1.0: one result per flagged model (level error), per reachable one (warning), per unknown
    (note), per scan error."""
    results = []
    for r in records:
        ident = r.get("identity") or {}
        where = f"{r.get('source')}@{ident.get('revision') or (ident.get('digest') or '')[:12]}"
        if r.get("status") in ("error", "skipped"):
            results.append({"ruleId": "EEB000", "level": "warning" if r["status"] == "error" else "none",
                            "message": {"text": f"{r['status']}: {r.get('reason')}"},
                            "locations": [{"logicalLocations": [{"fullyQualifiedName": where, "kind": "module"}]}]})
            continue
        if r["verdict"] == "clean":
            continue
        comp = (r.get("location") or {}).get("component") or "model"
        trig = r["triggers"][0]["text"] if r.get("triggers") else None
        if r["verdict"] == "reachable":
            results.append({
                "ruleId": "EEB002", "level": "warning", "message": {"text": erasure_note(r.get("erasure_check"))},
                "locations": [{"logicalLocations": [{"fullyQualifiedName": where, "kind": "module"}]}],
                "properties": {"probability": r["probability"], **(r.get("erasure_check") or {})},
            })
            continue
        results.append({
            "ruleId": "EEB001", "level": "error" if r["verdict"] == "backdoor" else "note",
            "message": {"text": f"erased concept {r['concept']!r} reachable through a hidden trigger "
                                f"(P={r['probability']}); recovered trigger {trig!r}"},
            "locations": [{"logicalLocations": [{"fullyQualifiedName": f"{where}/{comp}", "kind": "module"}]}],
            "properties": {"probability": r["probability"], "trigger": trig, "layer": (r.get("location") or {}).get("top_layer")},
        })
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "eebguard", "version": tool_version, "informationUri": "https://arxiv.org/abs/2504.21072",
                            "rules": [{"id": "EEB001", "name": "ErasureEvasionBackdoor",
                                       "shortDescription": {"text": "erased concept still reachable through a hidden trigger"}},
                                      {"id": "EEB002", "name": "ErasureDoesNotHold",
                                       "shortDescription": {"text": "erased concept shown to come back (its name or a "
                                                                    "found prompt), planted trigger or not"}},
                                      {"id": "EEB000", "name": "ScanError", "shortDescription": {"text": "model could not be scanned"}}]}},
        "results": results}]}


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
