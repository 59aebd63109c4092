"""Corpus fingerprints: which files, how big, when modified; and what changed since.

A fingerprint is metadata only (no content hashing), so it is cheap on a large
corpus. It is how a scan or mixture notices that the corpus it measured is no
longer the corpus on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any


def _stat(path: str) -> dict[str, Any]:
    if "://" in path:
        import fsspec

        fs, p = fsspec.core.url_to_fs(path)
        info = fs.info(p)
        mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
        etag = info.get("ETag") or info.get("etag")
        entry = {"path": path, "size": int(info.get("size") or 0), "mtime_ns": None}
        if mtime is not None:
            entry["mtime_ns"] = (
                str(mtime) if not isinstance(mtime, (int, float)) else int(mtime * 1e9)
            )
        if etag:
            entry["etag"] = str(etag)
        return entry
    st = os.stat(path)
    return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def fingerprint(files: list[str]) -> dict[str, Any]:
    """{"files": [{path, size, mtime_ns}, ...], "digest": sha256 of that list, "total_bytes"}.

    Files keep the given order (the corpus order), and the digest covers it, so
    a reordering is a change too.
    """
    entries = [_stat(p) for p in files]
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()
    return {
        "files": entries,
        "total_bytes": sum(e["size"] for e in entries),
        "digest": hashlib.sha256(canonical).hexdigest(),
    }


@dataclass
class FingerprintDiff:
    """Files added, removed or modified (size or mtime) between two fingerprints."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    reordered: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.modified or self.reordered)

    def describe(self, limit: int = 5) -> str:
        """One line for a person, e.g. '1 file added (/d/c.jsonl); 1 modified (/d/a.jsonl)'."""
        if not self.changed:
            return "unchanged"
        parts = []
        for verb, paths in (
            ("added", self.added),
            ("removed", self.removed),
            ("modified", self.modified),
        ):
            if paths:
                shown = ", ".join(paths[:limit]) + (
                    f", +{len(paths) - limit} more" if len(paths) > limit else ""
                )
                noun = "file" if len(paths) == 1 else "files"
                parts.append(f"{len(paths)} {noun} {verb} ({shown})")
        if self.reordered:
            parts.append("file order changed")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "added": self.added,
            "removed": self.removed,
            "modified": self.modified,
            "reordered": self.reordered,
            "summary": self.describe(),
        }


def compare_fingerprints(old: dict[str, Any], new: dict[str, Any]) -> FingerprintDiff:
    """What changed from `old` to `new` (both from `fingerprint`)."""
    before = {e["path"]: e for e in old["files"]}
    after = {e["path"]: e for e in new["files"]}
    common = [p for p in before if p in after]
    diff = FingerprintDiff(
        added=[p for p in after if p not in before],
        removed=[p for p in before if p not in after],
        modified=[p for p in common if before[p] != after[p]],
    )
    diff.reordered = common != [p for p in after if p in before]
    return diff
