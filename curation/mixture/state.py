"""The build's progress record (`.build/state.json`), for resuming after a killed worker.

It names what is being built (`identity`: the resolved plan, the skills, the
corpus fingerprint, shard size, format) and lists the committed shards with
their sha256. A rerun with the same identity skips shards whose files still
hash as recorded; a rerun with a different identity is refused, so two
different mixtures never mix in one directory.
"""

from __future__ import annotations

import json
import os
from typing import Any

from curation.atomic import atomic_file, write_json_atomic
from curation.mixture.shards import BUILD_DIR, sha256_file

STATE_FORMAT = "skillmix.mixture.state/1"


def write_json(path: str, data: Any, indent: int | None = None) -> None:
    """Deterministic JSON (sorted keys), written atomically."""
    write_json_atomic(path, data, sort_keys=True, indent=indent, ensure_ascii=False)


def write_jsonl(path: str, rows: list[dict[str, Any]]) -> None:
    """JSON lines with sorted keys, written atomically."""
    with atomic_file(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")


class BuildState:
    """Committed shards of one build in `out_dir`, persisted after every commit."""

    def __init__(self, out_dir: str, identity: dict[str, Any]):
        self.out_dir, self.identity = out_dir, identity
        self.path = os.path.join(out_dir, BUILD_DIR, "state.json")
        self.shards: dict[int, list[dict[str, Any]]] = {}

    def load(self) -> set[int]:
        """Indices of shards committed by an earlier run whose files are intact."""
        if not os.path.exists(self.path):
            return set()
        with open(self.path, encoding="utf-8") as f:
            previous = json.load(f)
        if previous.get("identity") != json.loads(json.dumps(self.identity, sort_keys=True)):
            raise ValueError(
                f"{self.out_dir} holds an unfinished build of a different mixture (plan, "
                "skills, corpus or shard size differ); use a new output directory or delete it"
            )
        for key, entries in previous.get("shards", {}).items():
            if all(self._intact(entry) for entry in entries):
                self.shards[int(key)] = entries
        return set(self.shards)

    def _intact(self, entry: dict[str, Any]) -> bool:
        path = os.path.join(self.out_dir, entry["path"])
        return os.path.exists(path) and sha256_file(path) == entry["sha256"]

    def commit(self, index: int, entries: list[dict[str, Any]]) -> None:
        self.shards[index] = entries
        self.save()

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        shards = {str(k): v for k, v in sorted(self.shards.items())}
        write_json(self.path, {"format": STATE_FORMAT, "identity": self.identity, "shards": shards})

    def entries(self) -> list[dict[str, Any]]:
        """Every committed shard file, in shard order (tokens file first)."""
        return [entry for _, entries in sorted(self.shards.items()) for entry in entries]
