"""Throughput of SkillTagger inside a datatrove pipeline, against a bare JSONL read.

    .venv/bin/python benchmarks/bench_tagger.py [--mb 200] [--repeat 3] [--no-record]

Builds benchmarks/data/tagger/corpus.jsonl (real English: the standard library's
docstrings and pydoc topics, cut into documents, ~1% of them with a planted skill
instance), then times, on one task, one worker, pinned to one core:
(a) JsonlReader + a step that drains the documents, and (b) the same with
SkillTagger in between, for 1, 10 and 50 skills (50 = 40 regexes, 10 keyword
sets of realistic sizes). Also times `SkillMatcher` alone on texts in memory,
its build and its warm throughput, to show where the time goes. Prints a table
and appends it to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import platform
import random
import shutil
import subprocess
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import JsonlReader
from tagger_skills import FULL_NAMES, skill_sets

from curation.skills.matcher import SkillMatcher
from curation.skills.probes import sample_instances
from curation.skills.spec import SkillSpec
from curation.steps.tagger import SkillTagger

ROOT = Path(__file__).resolve().parent


def stdlib_paragraphs() -> list[str]:
    """Docstring paragraphs of the standard library (parsed, never imported) and pydoc topics."""
    from pydoc_data.topics import topics

    texts = list(topics.values())
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        if {"site-packages", "test", "tests", "idlelib"} & set(path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        texts += [d for n in ast.walk(tree) if isinstance(n, kinds) and (d := ast.get_docstring(n))]
    return [p.strip() for t in texts for p in t.split("\n\n") if len(p.strip()) > 40]


def build_corpus(path: Path, megabytes: int, paragraphs: list[str], plants: list[str]) -> int:
    """Documents of consecutive paragraphs (lognormal lengths), 1% with a planted instance."""
    rng = random.Random(0)
    written, docs = 0, 0
    with open(path, "wb") as f:
        while written < megabytes * 1_000_000:
            target = min(int(rng.lognormvariate(7.6, 0.8)), 50_000)
            start = rng.randrange(len(paragraphs))
            parts, size = [], 0
            while size < target:
                parts.append(paragraphs[(start + len(parts)) % len(paragraphs)])
                size += len(parts[-1])
            if rng.random() < 0.01:
                parts.insert(rng.randrange(len(parts) + 1), rng.choice(plants))
            line = orjson.dumps({"id": f"d{docs}", "text": "\n\n".join(parts)}) + b"\n"
            f.write(line)
            written, docs = written + len(line), docs + 1
    return docs


class Drain(PipelineStep):
    """Consumes the documents (the end of a pipeline whose output we do not write)."""

    name = "drain"
    type = "bench"

    def run(self, data, rank: int = 0, world_size: int = 1):
        for _ in data:
            pass
        yield from ()


def time_pipeline(data_dir: Path, steps: list[PipelineStep]) -> float:
    with tempfile.TemporaryDirectory() as logs:
        executor = LocalPipelineExecutor(
            pipeline=[JsonlReader(str(data_dir)), *steps, Drain()],
            tasks=1,
            workers=1,
            logging_dir=logs,
            skip_completed=False,
        )
        started = time.perf_counter()
        executor.run()
        return time.perf_counter() - started


def machine() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        models = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
    cpu = models[0] if models else platform.processor()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, nproc={nproc}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="corpus size in MB (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    host = machine()  # before pinning, or nproc says 1
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    paragraphs = stdlib_paragraphs()
    sets = skill_sets(paragraphs)
    data_dir = ROOT / "data" / "tagger"
    corpus = data_dir / "corpus.jsonl"
    stamp = ROOT / "data" / f"tagger-{args.mb}mb.built"
    if not stamp.exists():
        shutil.rmtree(data_dir, ignore_errors=True)
        for old in (ROOT / "data").glob("tagger-*.built"):
            old.unlink()
        data_dir.mkdir(parents=True)
        generators = [spec for spec in sets["50 skills"] if spec.generator]
        plants = [i.text for spec in generators for i in sample_instances(spec, 20)]
        plants += random.Random(1).sample(FULL_NAMES, 50)
        stamp.write_text(str(build_corpus(corpus, args.mb, paragraphs, plants)))
    docs = int(stamp.read_text())
    size_mb = corpus.stat().st_size / 1e6
    with open(corpus, "rb") as f:
        texts = [orjson.loads(line)["text"] for line, _ in zip(f, range(7000), strict=False)]
    warm, texts = texts[:2000], texts[2000:]
    text_mb = sum(len(t.encode()) for t in texts) / 1e6

    def best(steps_factory) -> float:
        return min(time_pipeline(data_dir, steps_factory()) for _ in range(args.repeat))

    read = size_mb / best(list)
    rows = [("read only", f"{read:.1f}", "100%", "", "", "")]
    for name, specs in sets.items():
        tagged = ("-", "-")
        if not name.endswith("dense hits"):  # too slow for the whole corpus: the matcher only
            mbs = size_mb / best(lambda specs=specs: [SkillTagger(skills=specs)])
            tagged = (f"{mbs:.1f}", f"{mbs / read:.0%}")
        started = time.perf_counter()
        matcher = SkillMatcher(specs)
        build = time.perf_counter() - started
        for text in warm:
            matcher.find_spans(text)
        started = time.perf_counter()
        matches = sum(len(m) for text in texts for m in matcher.find_spans(text).values())
        alone = text_mb / (time.perf_counter() - started)
        rows.append(
            (f"read + SkillTagger, {name}", *tagged, f"{build:.2f}", f"{alone:.1f}",
             f"{matches / text_mb:,.0f}")
        )  # fmt: skip
    table = (
        "| pipeline | MB/s | vs read | matcher build, s | matcher warm, MB/s | matches per MB |\n"
        "|---|---|---|---|---|---|\n" + "".join(f"| {' | '.join(row)} |\n" for row in rows)
    )
    print(table)
    if not args.no_record:
        record(table, host, size_mb, docs, sets["50 skills"])


def record(table: str, host: str, size_mb: float, docs: int, fifty: list[SkillSpec]) -> None:
    results = ROOT / "RESULTS.md"
    if not results.exists():
        results.write_text("# Benchmark results\n\nFigures, machine and date of each run.\n")
    kinds = Counter(s.detector.kind for s in fifty)
    sizes = ", ".join(str(len(s.detector.keywords)) for s in fifty if s.detector.kind == "keywords")
    section = (
        f"\n## bench_tagger.py, {datetime.date.today().isoformat()}\n\n"
        f"Machine: {host}. One task, one worker, pinned to one core.\n"
        f"Corpus: {size_mb:.0f} MB JSONL, {docs:,} documents of stdlib docstrings and pydoc "
        f"topics, ~1% with a planted instance. 50 skills = {kinds['builtin']} builtin and "
        f"{kinds['regex']} user regexes, {kinds['keywords']} keyword sets ({sizes} keywords); "
        "'dense hits' swaps in detectors of common things (frequent words, numbers). Best of "
        "the repeats. The matcher columns time `SkillMatcher` alone, in memory: its build "
        "(a fixed cost per worker), then `find_spans` on 5,000 texts after 2,000 to warm "
        "RE2's DFA caches.\n\n" + table
    )
    with open(results, "a") as f:
        f.write(section)


if __name__ == "__main__":
    main()
