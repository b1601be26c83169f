"""SARIF 2.1.0, for code-scanning dashboards."""
from __future__ import annotations

import json

from eebguard.reports.base import FORMATS, ReportFormat
from eebguard.reports.notes import audit_note, prob, trigger_note


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
                            + (f": {trigger_note(trig)}" if trig else f" (p_live={prob(r.get('p_live'))})"),
                "tampered": f"model edited toward the erased concept {r['concept']!r} beyond the clean counterfactual "
                            f"(p_tampered={prob(r.get('p_tampered'))}, {r.get('tampered_by')})",
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


@FORMATS.register
class SarifFormat(ReportFormat):
    """SARIF 2.1.0: one result per model that is not clean and per scan error; every model an artifact."""

    name, extension, order = "sarif", "sarif", 4

    def render(self, records: list[dict]) -> str:
        from eebguard import __version__

        return json.dumps(sarif(records, __version__), indent=2)
