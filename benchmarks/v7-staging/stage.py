"""Stage a zoo that is still being built and scanned, so a later session can resume it from git.

Keeps the manifest rows of *scanned* models only (a built but unscanned model's delta does not survive
the session, and a resumed build remakes it from its seeded spec entry) and the groups rows of groups
whose every model is staged (a resumed build prepares the others again and appends their rows).

    python benchmarks/v7-staging/stage.py zoos/v7-heldout benchmarks/specs/heldout-v7-ship.json benchmarks/v7-staging/heldout
"""
from __future__ import annotations

import sys
from pathlib import Path


def main(zoo: str, spec: str, out: str) -> None:
    from eebguard.zoo.build import read_jsonl, write_jsonl
    from eebguard.zoo.spec import load_spec, plan

    src, dst = Path(zoo), Path(out)
    feats = read_jsonl(src / "features.jsonl")
    scanned = {r["id"] for r in feats}
    keep = [e for e in read_jsonl(src / "manifest.jsonl") if e["id"] in scanned]
    kept = {e["id"] for e in keep}
    members: dict[str, set] = {}
    for m in plan(load_spec(spec)):
        members.setdefault(m.group, set()).add(m.id)
    complete = {g for g, ids in members.items() if ids <= kept}
    # a rebuild appends its group's row again (the build log keeps every preparation); stage the last
    groups = list({g["group"]: g for g in read_jsonl(src / "groups.jsonl") if g["group"] in complete}.values())
    dst.mkdir(parents=True, exist_ok=True)
    for name, rows in (("manifest.jsonl", keep), ("groups.jsonl", groups),
                       ("features.jsonl", [r for r in feats if r["id"] in kept])):
        write_jsonl(dst / name, rows)
    print(f"staged {len(keep)} scanned models, {len({g['group'] for g in groups})} of {len(members)} groups complete")


if __name__ == "__main__":
    main(*sys.argv[1:4])
