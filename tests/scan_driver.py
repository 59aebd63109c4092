"""Run one scan as a separate process would (a test's driver inside a cluster's namespace).

`python -m tests.scan_driver SPEC.json`: SPEC holds `source` (CorpusSource fields),
`skills` (SkillSpec dicts), `workdir`, `allowed_roots`, `tasks`, `workers`, `executor`
and `options` (curation.executors.executor_factory's arguments). The report is the
work directory's report.json; a failure prints `ExceptionType: message` on the last line
of stderr and exits 1.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from curation.corpus import CorpusSource
from curation.executors import executor_factory
from curation.scan import run_scan
from curation.skills.spec import SkillSpec


def scan(spec: dict[str, Any]) -> dict[str, Any]:
    return run_scan(
        CorpusSource(**spec["source"]),
        [SkillSpec.model_validate(s) for s in spec["skills"]],
        spec["workdir"],
        allowed_roots=spec["allowed_roots"],
        batch_tokens=spec.get("batch_tokens", 16384),
        tasks=spec["tasks"],
        workers=spec["workers"],
        executor_factory=executor_factory(spec["executor"], spec["options"]),
        plots=False,
        poll_seconds=0.2,
    )


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    try:
        scan(spec)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
