"""Throughput and peak memory of build_mixture, against a plain read-and-write of the corpus.

    .venv/bin/python benchmarks/bench_mixture.py [--mb 1000] [--no-record]

Generates (once, cached) a planted corpus with curation.synthetic_corpus into
benchmarks/data/mixture/ (jsonl.gz, ~64 MB parts), scans it, then runs each
measured job in its own subprocess and reads its peak RSS there (VmHWM):

- read + write: read every jsonl.gz line, write the lines to jsonl.gz at the
  mixture's gzip level (the floor any streaming rewrite pays);
- build, synthesize only: one pass (token_pair, 4 per batch, uniform);
- build, synthesize + repeat: adds a repeated corpus skill (number comparison,
  2 every 4 batches), which needs a first pass to collect its documents;
- audit: re-scan of the second mixture's token shards.

Rates are uncompressed corpus MB per second. Targets: build >= 50% of the
read + write rate, peak RSS < 1 GB. Appends a dated section to RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data" / "mixture"
PART_DOCS = 40_000  # ~64 MB of text per part at 1500 characters per document
BATCH_TOKENS, SEQ_LEN = 262_144, 512
SKILLS = [
    {"id": "tp", "name": "token pairs", "detector": {"kind": "builtin"},
     "generator": {"family": "token_pair", "params": {"k": 100}}},
    {"id": "cmp", "name": "comparison", "detector": {"kind": "builtin"},
     "generator": {"family": "number_comparison"}},
]  # fmt: skip
DOSES = {
    "synthesize only": {"tp": {"target": {"per_batch": 4}}},
    "synthesize + repeat": {
        "tp": {"target": {"per_batch": 4}},
        "cmp": {"target": {"every": {"n": 2, "k": 4}}, "source": "repeat", "max_repeats": 16},
    },
}


def _part(args: tuple[int, str]) -> int:
    """Write corpus part `index` (its own seed) into `folder`; returns its text bytes."""
    from curation.skills.probes import sample_instances
    from curation.skills.spec import SkillSpec
    from curation.synthetic_corpus import Plant, generate_corpus

    index, folder = args
    texts = tuple(i.text for i in sample_instances(SkillSpec.model_validate(SKILLS[1]), 200))
    scratch = f"{folder}/tmp-{index}"
    corpus = generate_corpus(
        scratch, PART_DOCS, [Plant("cmp", texts, every=150, offset=index % 150)], seed=index,
        format="jsonl.gz", n_files=1,
    )  # fmt: skip
    os.replace(corpus.files[0], f"{folder}/part-{index:05d}.jsonl.gz")
    shutil.rmtree(scratch)
    return corpus.truth["bytes"]


def corpus(mb: int) -> Path:
    folder = DATA / f"corpus-{mb}mb"
    stamp = folder / "built.json"
    if not stamp.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        parts = max(1, round(mb * 1e6 / (PART_DOCS * 1600)))
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            sizes = list(pool.map(_part, [(i, str(folder)) for i in range(parts)]))
        stamp.write_text(json.dumps({"bytes": sum(sizes), "parts": parts}))
    return folder


def scan(folder: Path) -> dict:
    from curation.corpus import CorpusSource
    from curation.scan import run_scan

    path = folder.parent / f"{folder.name}-scan" / "report.json"
    if not path.exists():
        source = CorpusSource(f"{folder}/*.jsonl.gz", "jsonl.gz", id_key="id")
        jobs = os.cpu_count() or 1
        run_scan(
            source, SKILLS, str(path.parent), allowed_roots=[str(DATA)],
            batch_tokens=BATCH_TOKENS, tasks=jobs, workers=jobs, plots=False,
        )  # fmt: skip
    return json.loads(path.read_text())


def job_copy(folder: str, out: str) -> None:
    """Plain read + write: jsonl.gz lines in, the same lines out, ~1 MB writes."""
    from curation.mixture.shards import GZIP_LEVEL

    for part in sorted(Path(folder).glob("*.jsonl.gz")):
        with gzip.open(part, "rb") as lines, gzip.open(f"{out}/{part.name}", "wb", GZIP_LEVEL) as w:
            chunk, size = [], 0
            for line in lines:
                chunk.append(line)
                size += len(line)
                if size >= 1 << 20:
                    w.write(b"".join(chunk))
                    chunk, size = [], 0
            w.write(b"".join(chunk))


def job_build(folder: str, out: str, doses: str) -> None:
    from curation.corpus import CorpusSource
    from curation.mixture import DosingPlan, build_mixture, plan_mixture

    report = json.loads((Path(folder).parent / f"{Path(folder).name}-scan/report.json").read_text())
    dosing = DosingPlan(batch_tokens=BATCH_TOKENS, seq_len=SEQ_LEN, skills=DOSES[doses])
    plan = plan_mixture(report, SKILLS, dosing)
    source = CorpusSource(f"{folder}/*.jsonl.gz", "jsonl.gz", id_key="id")
    build_mixture(source, SKILLS, plan, out, allowed_roots=[str(DATA)], audit=False)


def job_audit(out: str) -> None:
    from curation.mixture import audit_mixture

    audit = audit_mixture(out, SKILLS)
    assert audit["passed"], audit


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage's ru_maxrss: Linux carries the forking
    parent's high-water mark across exec into ru_maxrss, which would hide the child's own."""
    status = Path("/proc/self/status")
    if status.exists():
        line = next(ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(job: str, *args: str) -> None:
    started = time.perf_counter()
    {"copy": job_copy, "build": job_build, "audit": job_audit}[job](*args)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


def measure(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"{args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if "model name" in ln), None)
    cpu = cpu or platform.processor()
    return f"{cpu}, nproc={os.cpu_count()}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1000, help="corpus size in MB (default 1000)")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    folder = corpus(args.mb)
    text_mb = json.loads((folder / "built.json").read_text())["bytes"] / 1e6
    gz_mb = sum(p.stat().st_size for p in folder.glob("*.jsonl.gz")) / 1e6
    report = scan(folder)
    rows, work = [], DATA / "out"
    for name, job in [("read + write", ("copy",)), *[(f"build, {d}", ("build", d)) for d in DOSES]]:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        result = measure(job[0], str(folder), str(work), *job[1:])
        rows.append((name, result))
    rows.append(("audit (synthesize + repeat mixture)", measure("audit", str(work))))
    base = text_mb / rows[0][1]["seconds"]
    lines = [
        f"| {name} | {r['seconds']:.1f} | {text_mb / r['seconds']:.1f} | "
        f"{text_mb / r['seconds'] / base:.0%} | {r['peak_rss_mb']:.0f} |"
        for name, r in rows
    ]
    table = "| job | seconds | MB/s | vs read + write | peak RSS, MB |\n|---|---|---|---|---|\n"
    table += "\n".join(lines) + "\n"
    manifest = json.loads((work / "manifest.json").read_text())
    summary = (
        f"Corpus: {text_mb:,.0f} MB of JSONL text ({gz_mb:,.0f} MB jsonl.gz, "
        f"{report['corpus']['docs_scanned']:,} documents). Mixture: {manifest['n_batches']:,} "
        f"batches of {BATCH_TOKENS:,} tokens, seq_len {SEQ_LEN}, gzip level 6 text shards "
        f"plus uint16 token shards ({manifest['tokens'] * 2 / 1e9:.1f} GB)."
    )
    print(summary + "\n\n" + table)
    shutil.rmtree(work, ignore_errors=True)
    if not args.no_record:
        record(summary, table)


def record(summary: str, table: str) -> None:
    results = ROOT / "RESULTS.md"
    if not results.exists():
        results.write_text("# Benchmark results\n\nFigures, machine and date of each run.\n")
    section = (
        f"\n## bench_mixture.py, {datetime.date.today().isoformat()}\n\n"
        f"Machine: {machine()}. Each job in its own process; peak RSS is its VmHWM. "
        f"{summary} Rates are uncompressed corpus MB/s; the build includes reading, "
        "packing, placing, both shard kinds, composition and manifest (not the audit, "
        "timed on its own).\n\n" + table
    )
    with open(results, "a") as f:
        f.write(section)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        main()
