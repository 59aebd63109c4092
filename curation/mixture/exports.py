"""Exports: a built mixture in the files other trainers read, in the mixture's order.

A mixture's order is its training order (docs/mixture-format.md), so an export writes the
token shards' sequences front to back, unchanged: sample i of every export is global
sequence i (what `training.data.MixtureReader.sequences(i, i + 1)` returns). Formats
(docs/exports.md says how each trainer reads them and how to keep its shuffling off):

- `mds`: MosaicML streaming's MDS (`index.json` + `shard.NNNNN.mds`), one sample per
  sequence with one column `input_ids` (`ndarray:<dtype>:<seq_len>`). Written here, byte
  for byte as `streaming.MDSWriter` writes it (tested against it): mosaicml-streaming's
  own pins (numpy < 2.2, xxhash < 4) cannot install beside this project's lock.
- `datatrove`: datatrove's tokenized files (`NNNNN.ds`, `.ds.index`, `.ds.metadata`), the
  files `DatatroveFolderDataset` and nanotron read, written with datatrove's own
  `TokenizedFile`. Its reader cuts windows of `seq_len + 1` tokens, so a mixture of
  `seq_len` S is read with `seq_len=S - 1`: window i is then sequence i exactly.
- `bin`: one `tokens-NNNNN.bin` per token shard in llm.c's layout (what nanoGPT-style
  loaders such as modded-nanogpt read): a header of 256 little-endian int32, `[0]` the
  magic 20240520, `[1]` the version (1: uint16 tokens, 2: uint32 tokens), `[2]` the
  token count, then the tokens. skillmix also fills `[3]` seq_len, `[4]` seqs_per_batch,
  `[5]` the file's first batch and `[6]` its sequences (readers of llm.c's layout leave
  slots 3.. unread).

Each export is written into a temporary folder and renamed into `exports/<name>/` whole
(`curation.atomic.atomic_dir`); the manifest, written after them, lists it under `exports`
with its files, and records `order: "fixed"`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from curation.atomic import atomic_dir
from curation.mixture.format import EOS, TOKEN_DTYPE

EXPORTS = ("mds", "datatrove", "bin")
"""The export names `output.exports` accepts."""
EXPORT_DIR = "exports"
ORDER = "fixed"
"""manifest `order`: sample i of the mixture and of every export is sequence i."""

BIN_MAGIC = 20240520
BIN_HEADER_INTS = 256
BIN_VERSIONS: dict[np.dtype[Any], int] = {np.dtype("<u2"): 1, np.dtype("<u4"): 2}
MDS_SIZE_LIMIT = 1 << 26
"""Bytes per MDS shard file, MDSWriter's default."""
CHUNK_SEQUENCES_TOKENS = 1 << 22
"""Tokens read from a token shard at a time (memory stays flat with mixture size)."""


class ExportError(ValueError):
    """An export that cannot be written; the message says why."""


def token_dtype(manifest: Mapping[str, Any]) -> np.dtype[Any]:
    """The dtype of the mixture's token shards: `manifest["token_dtype"]`, else
    `manifest["tokenizer"]["dtype"]` (a numpy name: "uint16", "<u2", "uint32"...), else
    uint16 (format_version 1's headerless little-endian uint16 shards)."""
    name = manifest.get("token_dtype") or (manifest.get("tokenizer") or {}).get("dtype")
    dtype = np.dtype(name or TOKEN_DTYPE).newbyteorder("<")
    if dtype not in BIN_VERSIONS:
        raise ExportError(f"token dtype {name!r} is not uint16 or uint32")
    return dtype


def eos_token(manifest: Mapping[str, Any]) -> int:
    return int((manifest.get("tokenizer") or {}).get("eos", EOS))


def token_shards(out_dir: str, manifest: Mapping[str, Any]) -> list[tuple[dict[str, Any], Any]]:
    """(manifest entry, read-only (sequences, seq_len) memmap) per token shard, in order."""
    seq_len, dtype = int(manifest["seq_len"]), token_dtype(manifest)
    shards = []
    for entry in manifest["shards"]:
        if entry["kind"] != "tokens":
            continue
        path = os.path.join(out_dir, entry["path"])
        shape = (int(entry["sequences"]), seq_len)
        if os.path.getsize(path) != shape[0] * shape[1] * dtype.itemsize:
            raise ExportError(f"{path}: size does not match {shape[0]} x {seq_len} {dtype}")
        shards.append((entry, np.memmap(path, dtype=dtype, mode="r", shape=shape)))
    return shards


def _chunks(shard: Any, seq_len: int) -> Iterator[np.ndarray]:
    rows = max(1, CHUNK_SEQUENCES_TOKENS // seq_len)
    for start in range(0, len(shard), rows):
        yield np.asarray(shard[start : start + rows])


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: str, relative_to: str) -> list[dict[str, Any]]:
    paths = glob.glob(os.path.join(glob.escape(folder), "**"), recursive=True)
    found = sorted(p for p in paths if os.path.isfile(p))
    return [
        {
            "path": os.path.relpath(p, relative_to).replace(os.sep, "/"),
            "bytes": os.path.getsize(p),
            "sha256": _sha256(p),
        }
        for p in found
    ]


# --- bin: llm.c's header + tokens ---------------------------------------------------------


def bin_header(manifest: Mapping[str, Any], entry: Mapping[str, Any]) -> np.ndarray:
    seq_len, per_batch = int(manifest["seq_len"]), int(manifest["seqs_per_batch"])
    sequences = int(entry["sequences"])
    count = sequences * seq_len
    if count >= 2**31:
        raise ExportError(
            f"{entry['path']} holds {count} tokens; a .bin header counts at most 2**31 - 1: "
            "build with smaller shards (SKILLMIX_MIXTURE_SHARD_BATCHES)"
        )
    header = np.zeros(BIN_HEADER_INTS, dtype="<i4")
    header[:7] = [
        BIN_MAGIC,
        BIN_VERSIONS[token_dtype(manifest)],
        count,
        seq_len,
        per_batch,
        int(entry["batches"][0]),
        sequences,
    ]
    return header


def read_bin(path: str) -> np.memmap[Any, np.dtype[Any]]:
    """A `.bin` export's tokens as a flat read-only memmap (checks magic, version, size)."""
    header = np.fromfile(path, dtype="<i4", count=BIN_HEADER_INTS)
    if header.size != BIN_HEADER_INTS or header[0] != BIN_MAGIC:
        raise ExportError(f"{path}: not a .bin export (magic {BIN_MAGIC} missing)")
    dtypes: dict[int, np.dtype[Any]] = {v: k for k, v in BIN_VERSIONS.items()}
    if int(header[1]) not in dtypes:
        raise ExportError(f"{path}: unknown .bin version {int(header[1])}")
    dtype, count = dtypes[int(header[1])], int(header[2])
    offset = BIN_HEADER_INTS * 4
    if os.path.getsize(path) != offset + count * dtype.itemsize:
        raise ExportError(f"{path}: size does not match its header's {count} tokens")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,))


def _export_bin(out_dir: str, manifest: Mapping[str, Any], folder: str) -> dict[str, Any]:
    seq_len = int(manifest["seq_len"])
    for entry, shard in token_shards(out_dir, manifest):
        with open(os.path.join(folder, os.path.basename(entry["path"])), "wb") as f:
            f.write(bin_header(manifest, entry).tobytes())
            for chunk in _chunks(shard, seq_len):
                f.write(chunk.tobytes())
    return {"header_ints": BIN_HEADER_INTS, "magic": BIN_MAGIC}


# --- mds: MosaicML streaming -----------------------------------------------------------------


def mds_config(manifest: Mapping[str, Any], size_limit: int | None = None) -> dict[str, Any]:
    """The shard configuration MDSWriter(columns={"input_ids": ...}, size_limit=...) records
    (size_limit: MDS_SIZE_LIMIT unless given)."""
    dtype, seq_len = token_dtype(manifest), int(manifest["seq_len"])
    size_limit = MDS_SIZE_LIMIT if size_limit is None else size_limit
    return {
        "column_encodings": [f"ndarray:{dtype.name}:{seq_len}"],
        "column_names": ["input_ids"],
        "column_sizes": [seq_len * dtype.itemsize],
        "compression": None,
        "format": "mds",
        "hashes": [],
        "size_limit": size_limit,
        "version": 2,
    }


class _MDSShards:
    """MDSWriter's joint shard layout for fixed-size samples: uint32 sample count, uint32
    offsets (count + 1, from the start of the file), the JSON config, then the samples.
    A shard takes samples while its size (8 + config bytes + each sample + 4) stays within
    size_limit, as MDSWriter.write decides."""

    def __init__(self, folder: str, config: dict[str, Any]):
        self.folder, self.config = folder, config
        self.config_data = json.dumps(config, sort_keys=True).encode("utf-8")
        self.sample_bytes = int(config["column_sizes"][0])
        room = int(config["size_limit"]) - 8 - len(self.config_data)
        self.per_shard = max(1, room // (self.sample_bytes + 4))
        self.shards: list[dict[str, Any]] = []
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0

    def add(self, rows: np.ndarray) -> None:
        while len(rows):
            take = rows[: self.per_shard - self.pending_rows]
            rows = rows[len(take) :]
            self.pending.append(take)
            self.pending_rows += len(take)
            if self.pending_rows == self.per_shard:
                self._flush()

    def _flush(self) -> None:
        n = self.pending_rows
        if not n:
            return
        basename = f"shard.{len(self.shards):05d}.mds"
        head = 4 + 4 * (n + 1) + len(self.config_data)
        offsets = (head + self.sample_bytes * np.arange(n + 1, dtype=np.int64)).astype("<u4")
        with open(os.path.join(self.folder, basename), "wb") as f:
            f.write(np.uint32(n).astype("<u4").tobytes() + offsets.tobytes() + self.config_data)
            for part in self.pending:
                f.write(np.ascontiguousarray(part).tobytes())
            size = f.tell()
        self.shards.append(
            {
                "samples": n,
                "raw_data": {"basename": basename, "bytes": size, "hashes": {}},
                "zip_data": None,
                **self.config,
            }
        )
        self.pending, self.pending_rows = [], 0

    def finish(self) -> None:
        self._flush()
        with open(os.path.join(self.folder, "index.json"), "w", encoding="utf-8") as f:
            json.dump({"shards": self.shards, "version": 2}, f, sort_keys=True)


def _export_mds(out_dir: str, manifest: Mapping[str, Any], folder: str) -> dict[str, Any]:
    config = mds_config(manifest)
    if 4 + 4 * 2 + len(json.dumps(config)) + config["column_sizes"][0] >= 2**32:
        raise ExportError("a sequence is too large for an MDS shard")
    writer = _MDSShards(folder, config)
    for _, shard in token_shards(out_dir, manifest):
        for chunk in _chunks(shard, int(manifest["seq_len"])):
            writer.add(chunk)
    writer.finish()
    return {"columns": {"input_ids": config["column_encodings"][0]}}


# --- datatrove: tokenized files (nanotron) ---------------------------------------------------


def tokenizer_name(manifest: Mapping[str, Any]) -> str:
    tokenizer = manifest.get("tokenizer") or {}
    kind = tokenizer.get("kind", "bytes")
    return str(tokenizer.get("name") or tokenizer.get("path") or f"skillmix-{kind}")


def _export_datatrove(out_dir: str, manifest: Mapping[str, Any], folder: str) -> dict[str, Any]:
    from datatrove.pipeline.tokens.tokenizer import TokenizedFile

    dtype, seq_len, eos = token_dtype(manifest), int(manifest["seq_len"]), eos_token(manifest)
    for index, (_, shard) in enumerate(token_shards(out_dir, manifest)):
        out = TokenizedFile(
            folder,
            f"{index:05d}.ds",
            save_index=True,
            tokenizer_name_or_path=tokenizer_name(manifest),
            save_final_metadata=True,
            token_size=dtype.itemsize,
        )
        for chunk in _chunks(shard, seq_len):
            flat = chunk.reshape(-1)
            # Document ends (in tokens, after each EOS); the chunk's end closes the piece of
            # document running into the next chunk (TokenizedFile counts from write_idx).
            ends = (np.flatnonzero(flat == eos) + 1).tolist()
            if not ends or ends[-1] != flat.size:
                ends.append(flat.size)
            out.write_bytes(flat.tobytes(), doc_ends=ends)
        out.close()
    return {"token_size": dtype.itemsize, "reader_seq_len": seq_len - 1}


_WRITERS: dict[str, Callable[[str, Mapping[str, Any], str], dict[str, Any]]] = {
    "mds": _export_mds,
    "datatrove": _export_datatrove,
    "bin": _export_bin,
}


def check_exports(names: Sequence[str]) -> list[str]:
    """The requested export names, deduplicated in the order of EXPORTS; ExportError for an
    unknown one."""
    unknown = sorted(set(names) - set(EXPORTS))
    if unknown:
        raise ExportError(
            f"unknown export(s) {', '.join(unknown)}; choose from {', '.join(EXPORTS)}"
        )
    return [name for name in EXPORTS if name in set(names)]


def export_mixture(
    out_dir: str, manifest: Mapping[str, Any], names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Write the exports `names` of the built mixture in `out_dir` (its token shards, as
    `manifest` lists them) under `out_dir/exports/<name>/`; returns the manifest's `exports`
    entries (the ones `manifest` already records are kept, not written again)."""
    done: dict[str, dict[str, Any]] = dict(manifest.get("exports") or {})
    todo = [name for name in check_exports(names) if name not in done]
    if not todo:
        return {name: done[name] for name in sorted(done)}
    root = os.path.join(out_dir, EXPORT_DIR)
    os.makedirs(root, exist_ok=True)
    for stale in glob.glob(os.path.join(glob.escape(root), "*.tmp")):
        shutil.rmtree(stale, ignore_errors=True)  # a killed writer's temporary folder
    # About what each export takes: the token shards' bytes (headers and indexes are small).
    needed = sum(
        int(e["sequences"]) * int(manifest["seq_len"]) * token_dtype(manifest).itemsize
        for e in manifest["shards"]
        if e["kind"] == "tokens"
    )
    for name in todo:
        target = os.path.join(root, name)
        what = f"the mixture's {name} export"
        with atomic_dir(target, what=what, needed=needed) as folder:
            details = _WRITERS[name](out_dir, manifest, folder)
        done[name] = {
            "path": f"{EXPORT_DIR}/{name}",
            "sequences": int(manifest["n_sequences"]),
            "order": ORDER,
            **details,
            "files": _files(target, out_dir),
        }
    return {name: done[name] for name in sorted(done)}
