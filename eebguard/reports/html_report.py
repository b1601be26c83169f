"""A self-contained HTML report (jinja2, autoescaped): per model the verdict, each trigger with its
demonstration grid (same seeds, suspect row above counterfactual row), the erasure audit, localisation,
attention maps and generations, all images inline as PNG data URIs (Pillow)."""
from __future__ import annotations

import base64
import io

import jinja2

from eebguard.records import printable
from eebguard.reports.base import FORMATS, ReportFormat
from eebguard.reports.notes import audit_note, counterfactual_note, moved_note, prob, trigger_note

# every printed text passes ``printable`` (control characters escaped), then autoescaping
_ENV = jinja2.Environment(loader=jinja2.PackageLoader("eebguard.reports", "templates"), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True,
                          finalize=lambda v: printable(v) if isinstance(v, str) else v)
PNG_URI = "data:image/png;base64,"


def png_uri(rgb, scale: int = 6) -> str:
    """A PNG data URI of ``rgb[y][x] = (r, g, b)`` in [0, 1], each pixel ``scale`` pixels wide."""
    import numpy as np
    from PIL import Image

    arr = (np.clip(np.asarray(rgb, dtype=np.float64), 0, 1) * 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB").resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return PNG_URI + base64.b64encode(buf.getvalue()).decode()


def _heat(m) -> list:
    lo = min(min(r) for r in m)
    hi = max(max(r) for r in m)
    span = (hi - lo) or 1.0
    return [[((v - lo) / span, 0.2, 1 - (v - lo) / span) for v in row] for row in m]


def _view(r: dict) -> dict:
    """What the template shows of one record: plain strings and numbers (the template escapes them)."""
    src = str(r.get("source"))
    if r.get("status") in ("error", "skipped"):
        return {"source": src, "status": str(r["status"]), "reason": str(r.get("reason"))}
    loc = r.get("location") or {}
    drops = list((loc.get("drops") or {}).items()) + [(f"attn2 {k}", v) for k, v in (loc.get("layer_drops") or {}).items()]
    maps = (r.get("evidence") or {}).get("attention_maps", {}).get("maps")
    return {
        "source": src, "status": None, "verdict": str(r["verdict"]), "concept": str(r["concept"]),
        "p_live": prob(r.get("p_live")), "p_tampered": prob(r.get("p_tampered")),
        "tampered_by": r.get("tampered_by") and str(r["tampered_by"]), "threshold": r["threshold"],
        "counterfactual": counterfactual_note(r.get("counterfactual")), "moved": moved_note(r),
        "triggers": [{"text": str(t.get("text")), "note": trigger_note(t),
                      "tokens": " ".join(str(x) for x in t.get("tokens") or []), "score_reach": t.get("score_reach"),
                      # a record is untrusted input: only our own PNG data URIs become images
                      "grid": str(t["grid"]) if str(t.get("grid") or "").startswith(PNG_URI) else None}
                     for t in r.get("triggers") or []],
        "audit": audit_note(r.get("erasure_audit")), "component": str(loc.get("component")),
        "drops": [(str(k), float(d), max(0.0, min(1.0, float(d))) * 20) for k, d in drops] if loc.get("drops") else [],
        "maps": [(which, [(f"{which} token {i}", png_uri(_heat(m), 8)) for i, m in enumerate(maps[which])])
                 for which in ("trigger", "name")] if maps else [],
        "images": [(str(which), [png_uri(im, 6) for im in ims]) for which, ims in (r.get("images") or {}).items()],
    }


def html_report(records: list[dict], title: str = "eebguard scan report") -> str:
    views = []
    for r in records:
        try:
            views.append(_view(r))
        except Exception as exc:  # noqa: BLE001 - one odd record must not cost the report
            views.append({"source": str(r.get("source") if isinstance(r, dict) else "?"),
                          "unrendered": type(exc).__name__})
    return _ENV.get_template("report.html.j2").render(title=title, records=views)


@FORMATS.register
class HtmlFormat(ReportFormat):
    """A self-contained HTML page: verdicts, demonstration grids, audit, localisation, maps, generations."""

    name, extension, order = "html", "html", 3

    def render(self, records: list[dict]) -> str:
        return html_report(records)
