"""Record a built zoo's measurements (manifest, groups, scan features) in git, without its deltas, so
its tables reproduce without the zoo and a later session can resume it.

Keeps the manifest rows of *scanned* models only (a built but unscanned model's delta does not survive
the session, and a resumed build remakes it from its seeded spec entry) and the groups rows of groups
whose every model is kept (a resumed build prepares the others again and appends their rows).
``--built`` keeps every built model instead (for the threat-lab table of a zoo not scanned yet); such a
record is not for copying into a zoo folder (a build would skip those ids, a scan find no delta).

    python experiments/zoo-records/stage.py zoos/v7-heldout heldout experiments/zoo-records/heldout
    python experiments/zoo-records/stage.py zoos/v7-design design experiments/zoo-records/design --built
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path


def main(zoo: str, spec: str, out: str, built: bool = False) -> None:
    from eebguard.lab.zoo.build import FEATURES_REFERENCE_FREE, read_jsonl, write_jsonl
    from eebguard.lab.zoo.spec import load_spec, plan

    src, dst = Path(zoo), Path(out)
    feats = read_jsonl(src / "features.jsonl")
    scanned = {r["id"] for r in feats}
    # a rebuilt model's row is appended again: keep the last row of each id
    rows = list({e["id"]: e for e in read_jsonl(src / "manifest.jsonl")}.values())
    keep = [e for e in rows if built or e["id"] in scanned]
    kept = {e["id"] for e in keep}
    members: dict[str, set] = {}
    for m in plan(load_spec(spec)):
        members.setdefault(m.group, set()).add(m.id)
    complete = {g for g, ids in members.items() if ids <= kept}
    # a rebuild appends its group's row again (the build log keeps every preparation); stage the last
    groups = list({g["group"]: g for g in read_jsonl(src / "groups.jsonl") if g["group"] in complete}.values())
    dst.mkdir(parents=True, exist_ok=True)
    noref = read_jsonl(src / FEATURES_REFERENCE_FREE)  # scans without a reference, where made
    for name, rows in (("manifest.jsonl", keep), ("groups.jsonl", groups),
                       ("features.jsonl", [r for r in feats if r["id"] in kept]),
                       (FEATURES_REFERENCE_FREE, [r for r in noref if r["id"] in kept])):
        if rows or not name.startswith("features"):  # an unscanned zoo has no features file, not an empty one
            write_jsonl(dst / name, rows)
    if (src / "spec.json").is_file():
        shutil.copyfile(src / "spec.json", dst / "spec.json")
    what = "built" if built else "scanned"
    print(f"recorded {len(keep)} {what} models ({len(kept & scanned)} scanned), "
          f"{len({g['group'] for g in groups})} of {len(members)} groups complete")


if __name__ == "__main__":
    main(*sys.argv[1:4], built="--built" in sys.argv[4:])
