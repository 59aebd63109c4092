"""Corpus scans: run_scan throughput against a bare datatrove read, scaling, peak memory.

    .venv/bin/python benchmarks/bench_scan.py [--repeat 2] [--only throughput,scaling,memory]
                                              [--no-record] [--clean]

Generates (once, cached) 16 JSONL files of ~100 MB into benchmarks/data/scan/parts/
(documents of consecutive standard-library docstring paragraphs, lognormal
lengths, ~1% with a planted skill instance: bench_tagger.py's corpus recipe, one
seed per file so every file is different) and hard-links subsets of them into
corpus folders: `tput` (4 files, ~400 MB), `mem-100` (1 file), `mem-1000` (10
files) and `big` (all 16, ~1.6 GB). Skill sets are tagger_skills.py's.

Each measured job runs in a fresh subprocess (`--child`), timed inside it, with
its peak RSS read from its own /proc/self/status (VmHWM). Before each job the
benchmark waits until the 1-minute load average is below --max-load (polling
every 15 s, at most --max-wait seconds; a job that started on a busy machine is
marked so). Jobs:

- throughput: `run_scan` (tasks=1, workers=1) against datatrove's JsonlReader + a
  draining step on one task, on `tput`, for the 50-skill set and a rare-skills variant
  of it, two ways: drawing the plots before it returns (the service's path before), and
  the service's path now (the report is the result; the plots are drawn after it,
  timed apart);
- scaling: `run_scan` with 10 skills on `big`, tasks=1/workers=1 vs tasks=2/workers=2,
  with and without plots, and the bare read on 1 and 2 tasks;
- memory: `run_scan` (50 rare skills) of `mem-100` and `mem-1000`.

Within a group the jobs of one round run one after the other (A/B/A/B), so a
busy spell of the machine hits all of them alike.

Prints a table and appends a dated section to RESULTS.md. --clean deletes the
generated data afterwards.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data" / "scan"
PARTS = DATA / "parts"
N_PARTS, PART_MB = 16, 100
CORPORA = {"tput": range(4), "mem-100": range(1), "mem-1000": range(10), "big": range(16)}
# The two throughput paths: run_scan drawing the plots before it returns (the service did
# this until the plots became a follow-up), and the service's path now: the report as the
# scan's result, the plots drawn after it is stored (their time reported on its own).
PLOTS_INSIDE, SERVICE_PATH = "plots in run_scan (before)", "service path (report; plots after)"
SKILLS_FILE = DATA / "skills.pkl"
PLANT_RATE = 0.01


# ---------------------------------------------------------------- corpus and skills


def write_part(path: Path, megabytes: int, paragraphs: list[str], plants: list[str], seed: int):
    """bench_tagger.build_corpus with a seed and an id prefix: one part of the corpus."""
    import orjson

    rng = random.Random(seed)
    written, docs = 0, 0
    with open(path, "wb") as f:
        while written < megabytes * 1_000_000:
            target = min(int(rng.lognormvariate(7.6, 0.8)), 50_000)
            start = rng.randrange(len(paragraphs))
            parts, size = [], 0
            while size < target:
                parts.append(paragraphs[(start + len(parts)) % len(paragraphs)])
                size += len(parts[-1])
            if rng.random() < PLANT_RATE:
                parts.insert(rng.randrange(len(parts) + 1), rng.choice(plants))
            line = orjson.dumps({"id": f"p{seed}-d{docs}", "text": "\n\n".join(parts)}) + b"\n"
            f.write(line)
            written, docs = written + len(line), docs + 1
    return docs


def rare_variant(
    fifty: list, hits: dict[str, float], vocabulary: set[str], threshold: float = 0.005
) -> list:
    """The 50-skill set with each detector that matches > `threshold` of documents swapped.

    `hits` is each skill's share of matched documents in a sample of the corpus.
    The corpus is made of the very paragraphs tagger_skills draws its rare words
    and word pairs from, so those keyword sets hit most documents here. A keyword
    set is swapped for the same keywords spelt backwards (same count, lengths and
    letters, so a comparable automaton, but next to no hits; a reversed word that
    is a word of the corpus, lowercased, gets a trailing "q"); a regex for a regex
    of a rare thing. Ids are kept.
    """
    from curation.skills.spec import SkillSpec

    replacements = iter(
        [
            (r"\bRFC-\d{5}\b", True),
            (r"\bPEP-\d{5}\b", True),
            (r"\bv\d+\.\d+\.\d+-(?:alpha|beta|rc)\d+\b", True),
            (r"\bunicodedata\.normalize\(\"NF[CD]\"", True),
            (r"\bsftp://[^\s<>\"]+", True),
            (r"\b\d{2,3}/\d{2,3} ?(?:mmHg|bpm)\b", True),
            (r"\b(?:integrate|differentiate) [a-z]\^\d\b", False),
            (r"\b[A-Z]{3}\d{4}[A-Z]\b", True),
            (r"\b\d+ (?:moles|joules|pascals|kelvins)\b", True),
            (r"\b(?:Ca|Na|Mg|Fe)\d*(?:Cl|O|SO4)\d* ?->", True),
            (r"\bISSN \d{4}-\d{3}[\dX]\b", True),
            (r"\b\d+ ?°[CF]\b", True),
            (r"\b[A-Z]{2}\d{2} ?\d{4} ?\d{4} ?\d{4}\b", True),
            (r"\blat(?:itude)? -?\d+\.\d+, ?lon(?:gitude)? -?\d+\.\d+", False),
        ]
    )
    rare = []
    for spec in fifty:
        if hits.get(spec.id, 0.0) > threshold:
            detector = spec.detector
            if detector.kind == "keywords":
                words = [
                    " ".join(w + "q" if w.lower() in vocabulary else w for w in k[::-1].split())
                    for k in detector.keywords
                ]
                new = {
                    "kind": "keywords",
                    "keywords": words,
                    "case_sensitive": detector.case_sensitive,
                }
            else:
                pattern, case = next(replacements)
                new = {"kind": "regex", "pattern": pattern, "case_sensitive": case}
            spec = SkillSpec(id=spec.id, name=spec.id, detector=new)
        rare.append(spec)
    return rare


def prepare() -> dict:
    """Generate the parts and the skill sets once (cached); returns the corpus description."""
    stamp = DATA / "built.json"
    if stamp.exists():
        return json.loads(stamp.read_text())
    sys.path.insert(0, str(ROOT))
    from bench_tagger import FULL_NAMES, stdlib_paragraphs
    from tagger_skills import skill_sets

    from curation.skills.probes import sample_instances

    paragraphs = stdlib_paragraphs()
    sets = skill_sets(paragraphs)
    if not (PARTS / "done").exists():
        shutil.rmtree(DATA, ignore_errors=True)
        PARTS.mkdir(parents=True)
        generators = [spec for spec in sets["50 skills"] if spec.generator]
        plants = [i.text for spec in generators for i in sample_instances(spec, 20)]
        plants += random.Random(1).sample(FULL_NAMES, 50)
        started, docs = time.perf_counter(), []
        for i in range(N_PARTS):
            docs.append(write_part(PARTS / f"part-{i:05d}.jsonl", PART_MB, paragraphs, plants, i))
            print(
                f"part {i}: {docs[-1]:,} docs ({time.perf_counter() - started:.0f} s)", flush=True
            )
        for name, indices in CORPORA.items():
            (DATA / name).mkdir()
            for i in indices:
                os.link(PARTS / f"part-{i:05d}.jsonl", DATA / name / f"part-{i:05d}.jsonl")
        (PARTS / "done").write_text(json.dumps(docs))
    docs = json.loads((PARTS / "done").read_text())
    sample = PARTS / "part-00000.jsonl"
    hits = skill_hits(sets["50 skills"], sample)
    vocabulary = {w.lower() for p in paragraphs for w in re.findall(r"\w+", p)}
    sets["50 skills, rare"] = rare_variant(sets["50 skills"], hits, vocabulary)
    chosen = {k: sets[k] for k in ("10 skills", "50 skills", "50 skills, rare")}
    SKILLS_FILE.write_bytes(pickle.dumps(chosen))
    info = {
        "docs": docs,
        "files": {n: len(CORPORA[n]) for n in CORPORA},
        "sizes": {n: sum(p.stat().st_size for p in (DATA / n).iterdir()) for n in CORPORA},
        "hits": {name: skill_hits(specs, sample) for name, specs in chosen.items()},
        "replaced": [s.id for s in sets["50 skills"] if hits.get(s.id, 0.0) > 0.005],
        "hits_50_skills_sample": hits,
    }
    stamp.write_text(json.dumps(info, indent=1))
    return info


def skill_hits(specs: list, path: Path, n_docs: int = 5000) -> dict[str, float]:
    """Share of the first `n_docs` documents of `path` in which each skill matches; '*' = any."""
    import orjson

    from curation.skills.matcher import SkillMatcher

    matcher = SkillMatcher(specs)
    counts: dict[str, int] = {}
    with open(path, "rb") as f:
        for line, _ in zip(f, range(n_docs), strict=False):
            found = matcher.find_spans(orjson.loads(line)["text"])
            for index in found:
                sid = specs[index].id
                counts[sid] = counts.get(sid, 0) + 1
            counts["*"] = counts.get("*", 0) + bool(found)
    return {sid: n / n_docs for sid, n in sorted(counts.items())}


# ---------------------------------------------------------------- one job, in a fresh process


def _drain():
    from datatrove.pipeline.base import PipelineStep

    class DrainStep(PipelineStep):
        """Consumes the documents (the end of a pipeline whose output we do not write)."""

        name = "drain"
        type = "bench"

        def run(self, data, rank: int = 0, world_size: int = 1):
            for _ in data:
                pass
            yield from ()

    return DrainStep()


def vm_hwm_mb() -> float:
    """Peak resident set of this process (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    """User and system CPU seconds of this process and its waited-for children so far."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def child(job: dict) -> dict:
    """Run one job in this process; returns its timings (wall and CPU) and peak RSS."""
    import tempfile

    from datatrove.executor import LocalPipelineExecutor

    corpus = DATA / job["corpus"]
    result: dict = {}
    if job["kind"] == "read":
        from datatrove.pipeline.readers import JsonlReader

        with tempfile.TemporaryDirectory(dir=DATA) as logs:
            executor = LocalPipelineExecutor(
                pipeline=[JsonlReader(str(corpus)), _drain()],
                tasks=job["tasks"],
                workers=job["workers"],
                logging_dir=logs,
                skip_completed=False,
            )
            started, cpu = time.perf_counter(), cpu_seconds()
            executor.run()
            result["seconds"] = time.perf_counter() - started
            result["cpu"] = cpu_seconds() - cpu
    else:
        from curation.corpus import CorpusSource
        from curation.scan import run_scan

        skills = pickle.loads(SKILLS_FILE.read_bytes())[job["skills"]]
        marks: dict[str, float] = {}

        def factory(**kwargs):
            marks["executor"] = time.perf_counter()
            return LocalPipelineExecutor(**kwargs)

        def progress(fraction: float, message: str) -> None:
            if message.startswith("merging"):
                marks["merge"] = time.perf_counter()
                marks["hwm_scan"] = vm_hwm_mb()  # the peak up to the end of the executor

        workdir = DATA / "work" / job["name"]
        shutil.rmtree(workdir, ignore_errors=True)  # a leftover workdir would skip its ranks
        workdir.mkdir(parents=True)
        source = CorpusSource(uri=str(corpus), format="jsonl", id_key="id")
        started, cpu = time.perf_counter(), cpu_seconds()
        report = run_scan(
            source,
            skills,
            str(workdir),
            allowed_roots=[str(DATA)],
            tasks=job["tasks"],
            workers=job["workers"],
            executor_factory=factory,
            progress=progress,
            plots=job.get("plots", True),
        )
        ended = time.perf_counter()
        result.update(
            seconds=ended - started,
            cpu=cpu_seconds() - cpu,
            setup=marks["executor"] - started,
            executor=marks["merge"] - marks["executor"],
            finish=ended - marks["merge"],
            vm_hwm_scan_mb=marks["hwm_scan"],
            docs=report["corpus"]["docs_scanned"],
            instances={sid: s["instances"] for sid, s in report["skills"].items()},
            report_sha=_report_digest(report),
        )
        if not job.get("plots", True):
            # The service's path: the report is the scan's result, the plots a follow-up
            # drawn after it is stored (timed here, not counted in `seconds`).
            from curation.scan_plots import draw_scan_plots

            drawn = time.perf_counter()
            draw_scan_plots(report, str(workdir))
            result["plots_after"] = time.perf_counter() - drawn
        shutil.rmtree(workdir)
    result["vm_hwm_mb"] = vm_hwm_mb()
    return result


def _report_digest(report: dict) -> str:
    """Digest of a report's skill figures (not of paths or timings): equal scans, equal digests."""
    import hashlib

    skills = {
        sid: {k: v for k, v in s.items() if k != "name"} for sid, s in report["skills"].items()
    }
    return hashlib.sha256(json.dumps(skills, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- the parent


def wait_quiet(max_load: float, max_wait: float, poll: float = 15.0) -> dict:
    """Wait until the 1-minute load average is below `max_load` (at most `max_wait` s)."""
    started = time.monotonic()
    while True:
        load = os.getloadavg()[0]
        waited = time.monotonic() - started
        if load < max_load:
            return {"load": load, "waited": waited, "busy": False}
        if waited >= max_wait:
            print(f"  load {load:.2f} still >= {max_load} after {waited:.0f} s: measuring anyway")
            return {"load": load, "waited": waited, "busy": True}
        time.sleep(poll)


def run_job(job: dict, max_load: float, max_wait: float) -> dict:
    quiet = wait_quiet(max_load, max_wait)
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)],
        capture_output=True,
        text=True,
        cwd=ROOT.parent,
    )
    if out.returncode != 0:
        raise RuntimeError(f"job {job} failed:\n{out.stderr[-3000:]}")
    result = {**job, **json.loads(out.stdout.strip().splitlines()[-1]), **quiet}
    result["load_after"] = os.getloadavg()[0]
    mb = info_size(job["corpus"]) / 1e6
    result["mb_s"] = mb / result["seconds"]
    extra = f" executor {mb / result['executor']:.1f} MB/s" if "executor" in result else ""
    print(
        f"  {job['name']}: {result['seconds']:.1f} s, {result['mb_s']:.1f} MB/s{extra}, "
        f"VmHWM {result['vm_hwm_mb']:.0f} MB (load before {quiet['load']:.2f}, "
        f"waited {quiet['waited']:.0f} s, after {result['load_after']:.2f})",
        flush=True,
    )
    return result


_INFO: dict = {}


def info_size(corpus: str) -> int:
    if not _INFO:
        _INFO.update(json.loads((DATA / "built.json").read_text()))
    return _INFO["sizes"][corpus]


def machine() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        models = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    with open("/proc/meminfo") as meminfo:
        mem_gib = int(meminfo.readline().split()[1]) / 2**20
    import platform

    return (
        f"{models[0] if models else platform.processor()}, nproc={nproc}, {mem_gib:.0f} GiB, "
        f"Python {platform.python_version()}"
    )


def warm_cache() -> None:
    """Read every part once so that every job reads from the page cache."""
    for path in sorted(PARTS.glob("*.jsonl")):
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def best(results: list[dict]) -> dict:
    return min(results, key=lambda r: r["seconds"])


def measure(args) -> dict:
    """All jobs of the chosen groups; returns {group: {label: [results]}}."""
    only = set(args.only.split(","))
    out: dict = {}

    def job(group, label, **spec):
        spec["name"] = f"{group}-{label}".replace(" ", "_").replace(",", "")
        out.setdefault(group, {}).setdefault(label, []).append(
            run_job(spec, args.max_load, args.max_wait)
        )

    if "throughput" in only:
        print("throughput (tput, one task):", flush=True)
        for _ in range(args.repeat):
            job("throughput", "read", kind="read", corpus="tput", tasks=1, workers=1)
            for skills in ("50 skills, rare", "50 skills"):
                for plots in (True, False):
                    label = f"{skills}, {PLOTS_INSIDE if plots else SERVICE_PATH}"
                    job("throughput", label, kind="scan", corpus="tput", skills=skills,
                        plots=plots, tasks=1, workers=1)  # fmt: skip
        job("throughput", "read", kind="read", corpus="tput", tasks=1, workers=1)
    if "scaling" in only:
        print("scaling (big, 10 skills):", flush=True)
        for _ in range(args.repeat):
            for plots in (True, False):
                for n in (1, 2):
                    label = f"tasks={n}" + ("" if plots else ", plots=False")
                    job("scaling", label, kind="scan", corpus="big", skills="10 skills",
                        plots=plots, tasks=n, workers=n)  # fmt: skip
            for n in (1, 2):
                job("scaling", f"read, tasks={n}", kind="read", corpus="big", tasks=n, workers=n)
    if "memory" in only:
        print("memory (50 skills, rare, one task):", flush=True)
        for corpus in ("mem-100", "mem-1000"):
            job("memory", corpus, kind="scan", corpus=corpus, skills="50 skills, rare",
                tasks=1, workers=1)  # fmt: skip
    return out


def tables(out: dict, info: dict) -> tuple[str, list[str]]:
    """The markdown tables and one verdict line per target."""
    text, verdicts = "", []

    def mb(r):
        return info["sizes"][r["corpus"]] / 1e6

    def stages(r):
        if "executor" not in r:
            return "", "", ""
        return f"{r['setup']:.1f}", f"{mb(r) / r['executor']:.1f}", f"{r['finish']:.1f}"

    def busy(rs):
        return "" if not any(r["busy"] for r in rs) else " (busy)"

    if "throughput" in out:
        groups = out["throughput"]
        read = best(groups["read"]) if "read" in groups else None
        text += (
            "| job (tput: 4 files, one task) | runs | best s | MB/s end to end | vs bare read "
            "| CPU s (best run) | setup s | scan stage MB/s | merge(+plots) s "
            "| plots after the report, s | docs with a hit | peak RSS MB |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        )
        for label, rs in groups.items():
            r = best(rs)
            ratio = f"{r['mb_s'] / read['mb_s']:.2f}x" if read else ""
            skills = r.get("skills")
            hit = f"{info['hits'][skills]['*']:.1%}" if skills else ""
            name = "bare read (JsonlReader + drain)" if label == "read" else f"run_scan, {label}"
            after = f"{r['plots_after']:.1f}" if "plots_after" in r else ""
            text += (
                f"| {name}{busy(rs)} | {len(rs)} | {r['seconds']:.1f} | {r['mb_s']:.1f} | {ratio} "
                f"| {r.get('cpu', float('nan')):.1f} | {' | '.join(stages(r))} | {after} | {hit} "
                f"| {r['vm_hwm_mb']:.0f} |\n"
            )
        if read:
            for skills in (f"{k}, {p}" for k in ("50 skills, rare", "50 skills")
                           for p in (PLOTS_INSIDE, SERVICE_PATH)):  # fmt: skip
                if skills in groups:
                    ratio = best(groups[skills])["mb_s"] / read["mb_s"]
                    target = 1.0 if "rare" in skills else 0.3  # issue 18
                    verdicts.append(
                        f"throughput, {skills}: {ratio:.2f}x the bare read "
                        f"(target >= {target}x): {'met' if ratio >= target else 'NOT met'}"
                    )
        text += "\n"
    if "scaling" in out:
        sc = out["scaling"]
        text += (
            "| job (big: 16 files, 10 skills) | runs | best s | MB/s end to end | speed-up "
            "| setup s | scan stage MB/s | merge+plots s |\n|---|---|---|---|---|---|---|---|\n"
        )
        for label, rs in sc.items():
            r, base = best(rs), best(sc[label.replace("tasks=2", "tasks=1")])
            text += (
                f"| {'bare' if label.startswith('read') else 'run_scan'} {label}{busy(rs)} "
                f"| {len(rs)} | {r['seconds']:.1f} | {r['mb_s']:.1f} "
                f"| {base['seconds'] / r['seconds']:.2f}x | {' | '.join(stages(r))} |\n"
            )
        for plots in ("", ", plots=False"):
            speedup = (
                best(sc[f"tasks=1{plots}"])["seconds"] / best(sc[f"tasks=2{plots}"])["seconds"]
            )
            verdicts.append(
                f"scaling{plots}, 2 tasks/2 workers vs 1: {speedup:.2f}x (target >= 1.8x): "
                f"{'met' if speedup >= 1.8 else 'NOT met'}"
            )
        text += "\n"
    if "memory" in out:
        mem = out["memory"]
        text += (
            "| job (50 skills, rare, one task) | corpus MB | s | MB/s end to end "
            "| peak RSS to the end of the scan stage, MB | peak RSS of the whole call, MB |\n"
            "|---|---|---|---|---|---|\n"
        )
        for label, rs in mem.items():
            r = best(rs)
            text += (
                f"| run_scan {label}{busy(rs)} | {mb(r):.0f} | {r['seconds']:.1f} "
                f"| {r['mb_s']:.1f} | {r['vm_hwm_scan_mb']:.0f} | {r['vm_hwm_mb']:.0f} |\n"
            )
        small, large = best(mem["mem-100"]), best(mem["mem-1000"])
        growth = large["vm_hwm_mb"] / small["vm_hwm_mb"]
        verdicts.append(
            f"memory, 100 MB -> 1 GB: peak RSS {small['vm_hwm_mb']:.0f} -> "
            f"{large['vm_hwm_mb']:.0f} MB ({growth:.2f}x; scan stage "
            f"{small['vm_hwm_scan_mb']:.0f} -> {large['vm_hwm_scan_mb']:.0f} MB; target flat): "
            f"{'met' if growth < 1.15 else 'NOT met'}"
        )
    return text, verdicts


def record(text: str, verdicts: list[str], info: dict, out: dict, args) -> None:
    jobs = [r for g in out.values() for rs in g.values() for r in rs]
    busy = [r["name"] for r in jobs if r["busy"]]
    loads = [r["load"] for r in jobs]
    sets = pickle.loads(SKILLS_FILE.read_bytes())
    fifty = sets["50 skills"]
    kinds = {k: sum(s.detector.kind == k for s in fifty) for k in ("builtin", "regex", "keywords")}
    docs = sum(info["docs"])
    section = (
        f"\n## bench_scan.py ({args.title}), {datetime.date.today()}\n\n"
        f"Machine: {machine()}. "
        f"Each job in a fresh process, started only once the 1-minute load average was below "
        f"{args.max_load} (load at the starts {min(loads):.2f}-{max(loads):.2f}); "
        + (
            f"**jobs started on a busy machine after {args.max_wait:.0f} s of waiting: "
            f"{', '.join(busy)}**. "
            if busy
            else "no job had to start on a busy machine. "
        )
        + "Files read from the page cache (all read once first).\n\n"
        f"Corpus: 16 JSONL files of ~100 MB ({docs:,} documents, mean ~3 KB), bench_tagger.py's "
        "recipe (consecutive standard-library docstring paragraphs, lognormal lengths, ~1% with "
        "a planted instance of a builtin skill or a full name), one seed per file. `tput` = "
        f"4 files ({info['sizes']['tput'] / 1e6:.0f} MB), `big` = all 16 "
        f"({info['sizes']['big'] / 1e6:.0f} MB), `mem-100`/`mem-1000` = the first 1/10 files. "
        "run_scan is the whole call (validation, executor, merge, report; plots where drawn "
        "inside it), "
        "format jsonl, id_key id, tokens as bytes; 'setup' is the time before the executor "
        "starts, 'merge+plots' after it ends. Best of the runs.\n\n"
        f"Skills (tagger_skills.py): '50 skills' = {kinds['builtin']} builtin, "
        f"{kinds['regex']} user regexes, {kinds['keywords']} keyword sets; it was written for "
        "rare skills, but its keyword sets are rare words and word pairs *of these very "
        f"paragraphs*, so here {info['hits']['50 skills']['*']:.0%} of the documents hit at "
        "least one skill. '50 skills, rare' swaps the detectors that hit > 0.5% of documents "
        f"({', '.join(info['replaced'])}) for rare ones (keyword sets spelt backwards, same "
        "sizes; regexes of rare things): "
        f"{info['hits']['50 skills, rare']['*']:.1%} of documents hit, which is the issue's "
        f"case. '10 skills' ({info['hits']['10 skills']['*']:.0%} of documents hit) for the "
        "scaling runs.\n\n" + text + "\nTargets:\n\n" + "".join(f"- {v}\n" for v in verdicts)
    )
    with open(ROOT / "RESULTS.md", "a") as f:
        f.write(section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure; the best counts")
    parser.add_argument("--only", default="throughput,scaling,memory")
    parser.add_argument("--max-load", type=float, default=0.7)
    parser.add_argument("--max-wait", type=float, default=1200.0, help="seconds")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--clean", action="store_true", help="delete benchmarks/data/scan after")
    parser.add_argument(
        "--from-results", action="store_true", help="tabulate data/scan/results.json again"
    )
    parser.add_argument(
        "--title", default="issue 18", help="what the RESULTS.md section's heading names"
    )
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(child(json.loads(args.child))))
        return
    info = prepare()
    if args.from_results:
        out = json.loads((DATA / "results.json").read_text())
    else:
        warm_cache()
        out = measure(args)
        (DATA / "results.json").write_text(json.dumps(out, indent=1))
    text, verdicts = tables(out, info)
    print(text)
    print("\n".join(verdicts))
    if not args.no_record:
        record(text, verdicts, info, out, args)
    if args.clean:
        shutil.rmtree(DATA)


if __name__ == "__main__":
    main()
