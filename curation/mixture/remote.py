"""Mixtures on object storage (s3://, gs://: any fsspec URL of an allowed protocol).

Object stores have no rename, so `curation.atomic`'s contract (write under a temporary
name, rename into place) becomes, for a mixture written to a URL:

1. the whole mixture (shards, exports, manifest, audit) is built in a local staging
   folder, where a killed build resumes as any local build does;
2. upload: first a marker object `.build/upload.json` (the plan's digest, so that a rerun
   knows an unfinished prefix as its own), then every file but the manifest, one PUT each
   (an object store shows an object whole or not at all: no torn files), then
   `manifest.json` **last**; then the marker is deleted.

A prefix holding `manifest.json` is a finished mixture and one without it is not, as for a
local folder; readers (`download_mixture`, and each export's own reader) look for it.
Credentials and endpoints are fsspec's own configuration (for s3fs: the AWS_* variables,
or FSSPEC_S3_ENDPOINT_URL for an S3-compatible server), never part of the URL.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from curation.mixture.format import MANIFEST
from curation.mixture.shards import BUILD_DIR
from curation.sources.paths import SourceRejected, ensure_remote_inside

MARKER = f"{BUILD_DIR}/upload.json"
AUDIT = "audit.json"


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/")


def _plan_digest(plan: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def remote_entries(url: str) -> list[str]:
    """Names directly under the prefix `url` (none when it does not exist)."""
    fs, root = _fs(url)
    try:
        return sorted(os.path.basename(p.rstrip("/")) for p in fs.ls(root, detail=False))
    except FileNotFoundError:
        return []


def read_remote_json(url: str, name: str) -> dict[str, Any] | None:
    fs, root = _fs(url)
    try:
        return json.loads(fs.cat_file(f"{root}/{name}"))
    except FileNotFoundError:
        return None


def upload_mixture(local_dir: str, url: str) -> list[str]:
    """Upload a finished local mixture folder under `url`, manifest last; returns the keys
    written (relative). `.build/` and temporary files are not uploaded."""
    fs, root = _fs(url)
    names = []
    for folder, dirs, files in os.walk(local_dir):
        dirs[:] = sorted(d for d in dirs if d != BUILD_DIR and not d.endswith(".tmp"))
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(folder, name), local_dir).replace(os.sep, "/")
            if rel != MANIFEST and not name.endswith(".tmp"):
                names.append(rel)
    for rel in names:
        fs.put_file(os.path.join(local_dir, rel), f"{root}/{rel}")
    fs.put_file(os.path.join(local_dir, MANIFEST), f"{root}/{MANIFEST}")
    return [*names, MANIFEST]


def download_mixture(url: str, local_dir: str) -> str:
    """Copy a finished mixture from `url` into `local_dir` (for `training.data.open_mixture`);
    FileNotFoundError when the prefix has no manifest (not a finished mixture)."""
    fs, root = _fs(url)
    if not fs.exists(f"{root}/{MANIFEST}"):
        raise FileNotFoundError(f"{url} has no {MANIFEST}: is it a finished mixture?")
    for path in sorted(fs.find(root)):
        rel = path[len(root) + 1 :]
        if rel.split("/", 1)[0] == BUILD_DIR:
            continue
        target = os.path.join(local_dir, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fs.get_file(path, target)
    return local_dir


def prepare_upload(
    out_dir: str,
    plan: Mapping[str, Any],
    exports: Sequence[str],
    allowed_roots: list[str],
    allowed_protocols: set[str] | None,
    staging_dir: str | None,
) -> tuple[str, dict[str, Any] | None]:
    """Check the URL `out_dir` for a build of `plan`: (its normalised URL, the finished
    result when the prefix already holds this mixture with these exports, its stored audit
    not re-run). Else a marker is left naming the plan, and the caller builds in
    `staging_dir` (ValueError if None) and uploads.
    SourceRejected for a URL not allowed or a prefix holding other objects; ValueError for
    one holding another mixture."""
    target = ensure_remote_inside(out_dir, allowed_roots, allowed_protocols)
    fs, root = _fs(target)
    digest = _plan_digest(plan)
    manifest = read_remote_json(target, MANIFEST)
    if manifest is not None:
        if _plan_digest(manifest["plan"]) != digest:
            raise ValueError(f"{out_dir} holds a different mixture; use a new output prefix")
        if set(exports) <= set(manifest.get("exports") or {}):
            audit = read_remote_json(target, AUDIT)
            if audit is not None:
                audit.pop("artifacts", None)  # local paths of the build that uploaded them
            return target, {"plan": manifest["plan"], "manifest": manifest, "audit": audit}
    else:
        marker = read_remote_json(target, MARKER)
        if marker is None and remote_entries(target):
            raise SourceRejected(f"{out_dir} is not empty and holds no mixture; use a new prefix")
        if marker is not None and marker.get("plan") != digest:
            raise ValueError(
                f"{out_dir} holds another mixture's unfinished upload; use a new prefix"
            )
    if staging_dir is None:
        raise ValueError(f"{out_dir} is a URL: building there needs a local staging_dir")
    fs.pipe_file(f"{root}/{MARKER}", json.dumps({"plan": digest}).encode())
    return target, None


def finish_upload(local_dir: str, target: str) -> None:
    """Upload the staged mixture (manifest last), then remove the marker."""
    upload_mixture(local_dir, target)
    fs, root = _fs(target)
    fs.rm_file(f"{root}/{MARKER}")
