"""A client generated from the OpenAPI document (openapi-python-client, offline, into
tmp_path) works against the real API: it creates a skill, a corpus and a scan, waits for the
scan's job and reads a skill's frequency from the typed report. Explicit operation ids name
its functions (`api.scans.scans_retrieve`); the report schemas give it typed models."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from service.api.app import create_app
from tests.clients.conftest import new_key
from tests.clients.test_reports import planted_corpus

PACKAGE = "skillmix_generated"
# No post hooks: they would run ruff over the generated code, which the test does not need.
CONFIG = f"package_name_override: {PACKAGE}\npost_hooks: []\n"


# The generator lives in a virtualenv of its own (`make install`; requirements/codegen.txt):
# its caps (httpx < 0.29, typer < 0.28) would lower the service's pins in the lock.
GENERATOR = Path(sys.prefix) / "codegen" / "bin" / "openapi-python-client"


def generated_client(folder: Path) -> ModuleType:
    assert GENERATOR.exists(), f"{GENERATOR} is missing: run `make install`"
    spec = folder / "openapi.json"
    spec.write_text(json.dumps(create_app().openapi()))
    config_file = folder / "config.yaml"
    config_file.write_text(CONFIG)
    command = [str(GENERATOR), "generate", "--path", str(spec), "--config", str(config_file)]
    command += ["--meta", "none", "--output-path", str(folder / PACKAGE), "--fail-on-warning"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    # Every schema and operation understood: a warning (a schema it skipped) fails too.
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))


def test_a_generated_client_reads_a_typed_scan_report(base_url: str, tmp_path: Path) -> None:
    package = generated_client(tmp_path)
    try:
        from skillmix_generated.api.corpora import corpora_create
        from skillmix_generated.api.jobs import jobs_retrieve
        from skillmix_generated.api.scans import scans_create, scans_retrieve
        from skillmix_generated.api.skills import skills_create
        from skillmix_generated.models import (
            CorpusCreate,
            CorpusCreateFormat,
            RegexDetector,
            ScanCreate,
            ScanPublic,
            ScanReport,
            SkillDefinition,
            SkillFrequency,
        )

        uri, truth = planted_corpus()
        client = package.AuthenticatedClient(base_url=base_url, token=new_key(), timeout=10.0)
        with client:
            detector = RegexDetector.from_dict({"kind": "regex", "pattern": r"cmp \d+ \d+ : [<>]"})
            skill = skills_create.sync(
                client=client, body=SkillDefinition(name="cmp", detector=detector)
            )
            corpus = corpora_create.sync(
                client=client,
                body=CorpusCreate(name="small", uri=uri, format_=CorpusCreateFormat.JSONL),
            )
            scan = scans_create.sync(
                client=client,
                body=ScanCreate(corpus_id=corpus.id, skill_ids=[skill.id], batch_tokens=1024),
            )
            assert isinstance(scan, ScanPublic), scan
            deadline = time.monotonic() + 60
            while (job := jobs_retrieve.sync(client=client, job_id=scan.job.id)).state not in (
                "succeeded", "failed", "cancelled",
            ):  # fmt: skip
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
            assert job.state == "succeeded", job.error
            done = scans_retrieve.sync(client=client, scan_id=scan.id)
        assert isinstance(done, ScanPublic) and isinstance(done.report, ScanReport)
        frequency = done.report.skills[skill.id]
        assert isinstance(frequency, SkillFrequency)
        planted = [i for i in truth["instances"] if i["skill_id"] == "cmp"]
        assert frequency.instances == len(planted)
        assert (
            frequency.per_batch > 0 and frequency.gap_tokens.max_ > 0
        )  # `max`, renamed off the builtin
        assert done.report.corpus.docs_scanned == 40
    finally:
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]
