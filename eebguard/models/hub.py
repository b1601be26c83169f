"""Hub ids resolved through the local Hugging Face cache only: eebguard never downloads."""
from __future__ import annotations

import os
import re
from pathlib import Path

from eebguard.models.errors import NotInLocalCache, PathEscape

HUB_ID = re.compile(
    r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95})(?:@(?P<rev>[A-Za-z0-9._/-]{1,128}))?$"
)
COMMIT = re.compile(r"^[0-9a-f]{40}$")


def parse_hub_id(ref: str) -> tuple[str, str | None] | None:
    m = HUB_ID.match(ref) if isinstance(ref, str) else None
    if not m or ".." in ref:
        return None
    return m.group("repo"), m.group("rev")


def hub_cache_dir() -> Path:
    """The cache huggingface_hub would use, read from the environment *now* (its constants freeze at import)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expanduser(os.environ[var]))
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(os.path.expanduser(home)) / "hub"


def resolve_hub(repo: str, revision: str | None) -> tuple[Path, Path, str]:
    """(snapshot folder, repo cache folder, commit) for a cached model repo."""
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    ref = f"{repo}@{revision}" if revision else repo
    try:
        snap = snapshot_download(repo, revision=revision, cache_dir=str(cache), local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure here means "not usable from the cache"
        raise NotInLocalCache(f"{ref}: not in the local Hugging Face cache ({cache}); eebguard never downloads") from None
    snap = Path(snap)
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    real_repo = Path(os.path.realpath(repo_dir))
    real_snap = Path(os.path.realpath(snap))
    if real_repo not in real_snap.parents:
        raise PathEscape(f"{ref}: cached snapshot resolves outside {repo_dir}")
    commit = snap.name
    if not COMMIT.match(commit):
        raise NotInLocalCache(f"{ref}: cached snapshot {commit[:60]!r} is not a commit hash")
    return snap, repo_dir, commit


def cached_pipelines() -> list[str]:
    """``repo@commit`` of every diffusers pipeline snapshot in the local cache (candidate bases)."""
    out = []
    cache = hub_cache_dir()
    if not cache.is_dir():
        return out
    for repo_dir in sorted(cache.glob("models--*--*")):
        repo = repo_dir.name.removeprefix("models--").replace("--", "/", 1)
        for snap in sorted((repo_dir / "snapshots").glob("*")):
            if COMMIT.match(snap.name) and (snap / "model_index.json").is_file() and parse_hub_id(repo):
                out.append(f"{repo}@{snap.name}")
    return out
