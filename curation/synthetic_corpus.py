"""A reproducible corpus with skill instances planted at known places.

Background text is real English prose that every Python install has: the
docstrings of standard-library modules and their public functions and classes.
Documents get realistic, lognormally distributed lengths; every few documents
carry non-ASCII words, so byte and character offsets differ. Instances are
inserted at word boundaries, and a ground-truth sidecar (`truth.json`) records
each planted instance: document, file, row, character and byte offsets, and its
position in corpus order in bytes (byte-level tokens). Tests and `make demo`
check a scan against that sidecar.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

_MODULE_NAMES = (
    "abc argparse ast asyncio base64 bisect calendar collections csv dataclasses datetime "
    "decimal difflib email enum fractions functools gzip heapq html http.client inspect io "
    "ipaddress itertools json logging math operator os pathlib pickle pydoc queue random "
    "re shutil socket statistics string subprocess tarfile tempfile textwrap threading "
    "timeit typing unittest urllib.parse uuid zipfile zlib"
)
STDLIB_MODULES = tuple(_MODULE_NAMES.split())
UNICODE_PHRASE = "Naïve café déjà vu — Zürich, 東京, αβγ."
SUFFIX = {"jsonl": ".jsonl", "jsonl.gz": ".jsonl.gz", "parquet": ".parquet"}


@dataclass(frozen=True)
class Plant:
    """Instances of one skill to plant.

    texts: instance texts, used in turn; fewer texts than instances gives repeats.
    every/offset: plant in documents whose index i has i % every == offset;
    docs: or explicit document indices (both may be given; the union is used).
    per_doc: instances per chosen document.
    where: "start", "end" or "random" (at a random word boundary).
    """

    skill_id: str
    texts: tuple[str, ...]
    every: int = 0
    offset: int = 0
    docs: tuple[int, ...] = ()
    per_doc: int = 1
    where: str = "random"

    def chosen(self, doc: int) -> bool:
        return doc in self.docs or (self.every > 0 and doc % self.every == self.offset)


@dataclass
class GeneratedCorpus:
    """Where the corpus was written, how to register it, and the ground truth."""

    uri: str
    format: str
    files: list[str]
    truth_path: str
    truth: dict[str, Any] = field(repr=False)


# Run in a fresh interpreter by background_paragraphs (argv: the module names).
_PARAGRAPHS_SCRIPT = r"""
import importlib, inspect, json, re, sys

seen = {}
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
    except ImportError:
        continue
    objects = [module] + [
        getattr(module, a, None) for a in sorted(dir(module)) if not a.startswith("_")
    ]
    for obj in objects:
        if not (obj is module or inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        for para in re.split(r"\n\s*\n", inspect.getdoc(obj) or ""):
            para = " ".join(para.split())
            if len(para) >= 60 and ">>>" not in para:
                seen.setdefault(para)
sys.stdout.write(json.dumps(list(seen)))
"""


@lru_cache(maxsize=1)
def background_paragraphs() -> tuple[str, ...]:
    """Unique prose paragraphs from standard-library docstrings, in a fixed order.

    Read in a fresh, isolated interpreter (`python -I -S`: no site-packages, no
    PYTHONPATH), not in this process: importing a library can replace standard-library
    functions, and with them their docstrings (importing torch swaps `inspect.getfile`
    for an undocumented function; gevent's monkey patching swaps socket and threading
    functions). Read here, the corpus would depend on what the caller had imported.
    """
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _PARAGRAPHS_SCRIPT, *STDLIB_MODULES],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            "reading the standard library's docstrings in a fresh interpreter failed: "
            + done.stderr.decode(errors="replace")[-2000:]
        )
    return tuple(json.loads(done.stdout))


def _background(rng: random.Random, pool: list[str], mean_chars: int) -> str:
    target = min(
        20 * mean_chars, max(80, int(rng.lognormvariate(math.log(mean_chars) - 0.32, 0.8)))
    )
    i, parts, size = rng.randrange(len(pool)), [], 0
    while size < target:
        parts.append(pool[i % len(pool)])
        size += len(parts[-1]) + 2
        i += 1
    return "\n\n".join(parts)


def _insert(rng: random.Random, text: str, items: list[tuple[str, str, str]]) -> tuple[str, list]:
    """Insert (skill_id, instance, where) items at word boundaries.

    Returns the new text and (skill_id, instance, char_start) per inserted item.
    """
    boundaries = [0] + [m.end() for m in re.finditer(r"\s", text)]
    points = []
    for order, (sid, inst, where) in enumerate(items):
        at = {"start": 0, "end": len(text)}.get(where)
        points.append((rng.choice(boundaries) if at is None else at, order, sid, inst, where))
    points.sort()
    out, placed, previous = [], [], 0
    for at, _, sid, inst, where in points:
        out.append(text[previous:at])
        start = sum(map(len, out))
        if where == "end":
            out.append(" " + inst)
            start += 1
        else:
            out.append(inst + " ")
        placed.append((sid, inst, start))
        previous = at
    out.append(text[previous:])
    return "".join(out), placed


def _documents(n_docs: int, plants: list[Plant], seed: int, mean_chars: int, unicode_every: int):
    rng = random.Random(seed)
    forbidden = [t for p in plants for t in p.texts]
    pool = [p for p in background_paragraphs() if not any(t in p for t in forbidden)]
    used: Counter = Counter()
    for doc in range(n_docs):
        text = _background(rng, pool, mean_chars)
        if unicode_every and doc % unicode_every == unicode_every - 1:
            text = f"{UNICODE_PHRASE} {text}"
        items = []
        for plant in plants:
            if plant.chosen(doc):
                for _ in range(plant.per_doc):
                    items.append(
                        (
                            plant.skill_id,
                            plant.texts[used[plant.skill_id] % len(plant.texts)],
                            plant.where,
                        )
                    )
                    used[plant.skill_id] += 1
        yield _insert(rng, text, items) if items else (text, [])


def _write(files_docs: list[tuple[str, list[dict]]], fmt: str, out_dir: str) -> str:
    if fmt == "hf_disk":
        import datasets

        datasets.disable_progress_bars()
        rows = [row for _, docs in files_docs for row in docs]
        folder = os.path.join(out_dir, "hf")
        table = {"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]}
        datasets.Dataset.from_dict(table).save_to_disk(folder, num_shards=len(files_docs))
        return folder
    for path, docs in files_docs:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]})
            pq.write_table(table, path, row_group_size=max(1, len(docs) // 3))
            continue
        lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode()
        if fmt == "jsonl.gz":
            with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                gz.write(lines)
        else:
            with open(path, "wb") as f:
                f.write(lines)
    return os.path.join(out_dir, f"*{SUFFIX[fmt]}")


def _truth_skill(instances: list[dict]) -> dict[str, Any]:
    texts = Counter(i["text"] for i in instances)
    return {
        "instances": len(instances),
        "matched_docs": len({i["doc"] for i in instances}),
        "unique_instances": len(texts),
        "max_repeats": max(texts.values(), default=0),
        "instance_bytes": sum(len(i["text"].encode()) for i in instances),
        "positions": sorted(i["position"] for i in instances),
    }


def generate_corpus(
    out_dir: str,
    n_docs: int,
    plants: list[Plant],
    seed: int = 0,
    format: str = "jsonl",
    n_files: int = 4,
    mean_chars: int = 1500,
    unicode_every: int = 7,
) -> GeneratedCorpus:
    """Write a corpus of `n_docs` documents in `n_files` files plus `truth.json` to `out_dir`.

    The same arguments give the same corpus on the same Python version (the
    background text comes from its standard library), whatever this process has
    imported (see background_paragraphs).
    """
    if format not in (*SUFFIX, "hf_disk"):
        raise ValueError(f"unknown format {format!r}")
    os.makedirs(out_dir, exist_ok=True)
    n_files = max(1, min(n_files, n_docs))
    bounds = [round(i * n_docs / n_files) for i in range(n_files + 1)]
    docs: Iterator = _documents(n_docs, plants, seed, mean_chars, unicode_every)
    files_docs, instances, position, total_docs = [], [], 0, 0
    for f in range(n_files):
        rows = []
        for row in range(bounds[f + 1] - bounds[f]):
            text, placed = next(docs)
            for sid, inst, start in placed:
                byte_start = len(text[:start].encode())
                instances.append(
                    {
                        "skill_id": sid,
                        "text": inst,
                        "doc": total_docs,
                        "file": f,
                        "row": row,
                        "char_start": start,
                        "char_end": start + len(inst),
                        "byte_start": byte_start,
                        "position": position + byte_start,
                    }
                )
            rows.append({"id": f"doc-{total_docs:07d}", "text": text})
            position += len(text.encode())
            total_docs += 1
        files_docs.append((os.path.join(out_dir, f"part-{f:05d}{SUFFIX.get(format, '')}"), rows))
    uri = _write(files_docs, format, out_dir)
    skill_ids = list(dict.fromkeys(p.skill_id for p in plants))
    truth = {
        "format": format,
        "seed": seed,
        "docs": total_docs,
        "bytes": position,
        "plants": [asdict(p) for p in plants],
        "skills": {
            s: _truth_skill([i for i in instances if i["skill_id"] == s]) for s in skill_ids
        },
        "instances": instances,
    }
    truth_path = os.path.join(out_dir, "truth.json")
    with open(truth_path, "w") as fh:
        json.dump(truth, fh)
    files = [p for p, _ in files_docs] if format != "hf_disk" else []
    return GeneratedCorpus(uri=uri, format=format, files=files, truth_path=truth_path, truth=truth)
