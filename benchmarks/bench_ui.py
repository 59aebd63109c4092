"""Latency of the /ui pages on the demo's data with the embedded default (SQLite, one API
process serving from a thread, as `skillmix serve --embedded` does).

    python benchmarks/bench_ui.py [--data-dir DIR] [--seeds 3] [--steps 200] [--n 60]

Without demo data in DIR it first runs `skillmix demo`'s steps (`run_demo`: three skills,
a 3,000-document corpus, its scan, a dosed mixture, a verification of it against the
automatic baseline) with `--seeds` seeds and `--steps` steps (the demo's own 5 and 4,000
take about 15 minutes on two cores; the pages hold the same kinds of data, with the same
20 evaluations a run). Then it signs in at /ui with a key of the demo's project and fetches
each page `--n` times, one request at a time, after two warm-up requests, and prints the
median and 95th percentile per page (target: p95 < 200 ms). Not a test: timings depend on
the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from pathlib import Path

import httpx


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/skillmix-bench-ui"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--n", type=int, default=60)
    args = parser.parse_args()
    os.environ["SKILLMIX_DATA_DIR"] = str(args.data_dir)
    os.environ.setdefault("SKILLMIX_RATE_LIMIT_PER_MINUTE", "0")

    from service.cli.embedded import refresh_settings

    refresh_settings()
    from sqlalchemy import select

    from service.auth import create_key
    from service.cli.demo import run_demo
    from service.cli.embedded import run_api
    from service.db import session_scope
    from service.migrate import upgrade
    from service.models import Project, Verification
    from service.settings import get_settings

    upgrade(get_settings().effective_database_url)
    with session_scope() as session:
        done = session.scalar(select(Verification.id).limit(1))
    if done is None:
        started = time.perf_counter()
        assert run_demo(args.data_dir, seeds=args.seeds, steps=args.steps) == 0
        print(f"demo data made in {time.perf_counter() - started:.0f} s")
    with session_scope() as session:
        project = session.scalars(
            select(Project).where(Project.name.like("demo-%")).order_by(Project.name.desc())
        ).first()
        assert project is not None
        _, key = create_key(session, project.name)

    with run_api() as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        page = client.get("/ui/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        client.post("/ui/sign-in", data={"key": key, "csrf_token": token.group(1)})

        def first_link(path: str, kind: str) -> str:
            found = re.search(rf'href="(/ui/{kind}/[a-z]+_[0-9a-f]+)"', client.get(path).text)
            assert found, (path, kind)
            return found.group(1)

        # Both of the demo's mixtures: the dosed one and its automatic baseline.
        mixtures = sorted(
            set(re.findall(r'href="(/ui/mixtures/mix_[0-9a-f]+)"', client.get("/ui/mixtures").text))
        )
        pages = [
            "/ui",
            "/ui/skills",
            first_link("/ui/skills", "skills"),
            "/ui/scans",
            first_link("/ui/scans", "scans"),
            "/ui/mixtures",
            *[page for m in mixtures for page in (m, m + "/composition.json")],
            "/ui/verifications",
            first_link("/ui/verifications", "verifications"),
        ]
        print(
            f"\nmachine: {platform.processor() or platform.machine()}, nproc={os.cpu_count()}, "
            f"Python {platform.python_version()}; load average {os.getloadavg()}"
        )
        print(f"{args.n} requests a page, one at a time, after 2 warm-up requests\n")
        print("| page | bytes | p50, ms | p95, ms | max, ms |")
        print("|---|---|---|---|---|")
        for path in pages:
            for _ in range(2):
                assert client.get(path).status_code == 200, path
            times, size = [], 0
            for _ in range(args.n):
                start = time.perf_counter()
                r = client.get(path)
                times.append((time.perf_counter() - start) * 1000)
                assert r.status_code == 200, path
                size = len(r.content)
            shown = re.sub(r"_[0-9a-f]{28}", "_…", path)
            print(
                f"| `{shown}` | {size:,} | {statistics.median(times):.1f} | "
                f"{percentile(times, 0.95):.1f} | {max(times):.1f} |"
            )
        print(f"\nload average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
