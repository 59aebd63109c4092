"""Generate a planted corpus (stdlib docstrings as text) with a ground-truth sidecar.

    python benchmarks/corpus_gen.py benchmarks/data/web --docs 20000 --format jsonl.gz \
        --files 8 --plant cmp:every=50 --plant modadd:every=2000:per_doc=2:unique=20

A plant is SKILL_ID:key=value:..., with keys every, offset, per_doc, where
(start|end|random), unique (distinct instance texts) and family (cmp or
modadd; default: the skill id if it names a family, else cmp).
"""

from __future__ import annotations

import argparse
import random
import time

from curation.synthetic_corpus import Plant, generate_corpus

FORMATS = ("jsonl", "jsonl.gz", "parquet", "hf_disk")


def family_texts(family: str, unique: int, seed: int) -> tuple[str, ...]:
    """`unique` distinct instance texts of a small built-in family."""
    rng = random.Random(seed)
    texts: dict[str, None] = {}
    while len(texts) < unique:
        a, b = rng.randrange(10, 100), rng.randrange(10, 100)
        if family == "modadd":
            texts.setdefault(f"{a} + {b} mod 97 = {(a + b) % 97}")
        elif a != b:
            texts.setdefault(f"cmp {a} {b} : {'<' if a < b else '>'}")
    return tuple(texts)


def parse_plant(spec: str, seed: int) -> Plant:
    skill_id, *options = spec.split(":")
    opts = dict(o.split("=", 1) for o in options)
    family = opts.pop("family", skill_id if skill_id in ("cmp", "modadd") else "cmp")
    texts = family_texts(family, int(opts.pop("unique", 100)), seed)
    plant = Plant(
        skill_id,
        texts,
        every=int(opts.pop("every", 0)),
        offset=int(opts.pop("offset", 0)),
        per_doc=int(opts.pop("per_doc", 1)),
        where=opts.pop("where", "random"),
    )
    if opts:
        raise SystemExit(f"unknown plant options {sorted(opts)} in {spec!r}")
    return plant


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir")
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--format", choices=FORMATS, default="jsonl.gz")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mean-chars", type=int, default=1500)
    parser.add_argument(
        "--plant", action="append", default=[], help="SKILL_ID:every=N[:per_doc=K]..."
    )
    args = parser.parse_args()
    plants = [parse_plant(p, args.seed + i) for i, p in enumerate(args.plant or ["cmp:every=100"])]
    start = time.perf_counter()
    corpus = generate_corpus(
        args.out_dir, args.docs, plants, args.seed, args.format, args.files, args.mean_chars
    )
    seconds = time.perf_counter() - start
    truth = corpus.truth
    print(
        f"uri={corpus.uri} format={corpus.format} docs={truth['docs']:,} bytes={truth['bytes']:,}"
    )
    for sid, s in truth["skills"].items():
        found = f"{s['instances']:,} instances in {s['matched_docs']:,} docs"
        print(f"  {sid}: {found}, {s['unique_instances']} unique")
    speed = truth["bytes"] / 1e6 / seconds
    print(f"truth={corpus.truth_path} written in {seconds:.1f} s ({speed:.1f} MB/s)")


if __name__ == "__main__":
    main()
