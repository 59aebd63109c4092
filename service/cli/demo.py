"""`skillmix demo`: the main job on the embedded default, driven through the SDK over HTTP
as a data team would: register skills, generate a corpus with rare skill instances planted
in it, scan it, and print the frequency table."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import typer
from skillmix_client import Skillmix
from skillmix_client.cli import (
    audit_table,
    console,
    frequency_table,
    study_table,
    verdict_table,
)

from curation.skills.probes import SkillGenerator
from curation.skills.spec import SkillSpec
from curation.synthetic_corpus import Plant, generate_corpus
from service.auth import create_key
from service.cli.embedded import embedded_stack
from service.db import session_scope
from service.store.verifications import HELDOUT_TOKENS

# The demo's skills, and how rare each is in the generated corpus (one instance in every
# `every` documents): rare enough that a small model does not learn them by itself.
DEMO_SKILLS: list[tuple[dict[str, Any], int]] = [
    (
        {
            "name": "compare-2-digit",
            "description": "cmp 47 52 : <  (SCIENCE.md, demo scale)",
            "detector": {"kind": "builtin"},
            "generator": {
                "family": "number_comparison",
                "params": {"min_digits": 2, "max_digits": 2},
            },
        },
        12,
    ),
    (
        {
            "name": "mod-add-97",
            "description": "a + b mod 97 = c",
            "detector": {"kind": "builtin"},
            "generator": {"family": "modular_addition", "params": {"modulus": 97}},
        },
        40,
    ),
    (
        {
            "name": "token-pair-order",
            "description": "the paper's 3-token comparison task",
            "detector": {"kind": "builtin"},
            "generator": {"family": "token_pair", "params": {"rule": "order", "k": 20}},
        },
        150,
    ),
]
DEMO_DOCS = 3000
# Demo scale (SCIENCE.md, "What we measured here"): batches of 16 sequences x 64 byte
# tokens; at 8 instances a batch the nano model learns two-digit comparison, at the
# corpus's natural ~0.05 it does not.
BATCH_TOKENS, SEQ_LEN, DOSE_PER_BATCH = 1024, 64, 8
DEMO_SEEDS, DEMO_STEPS = 5, 4000
HELDOUT_BATCHES = HELDOUT_TOKENS // BATCH_TOKENS


def natural_instances(definition: dict[str, Any], n: int, seed: int) -> tuple[str, ...]:
    """Instances as a web corpus would hold them: from both splits, a few repeated."""
    spec = SkillSpec.model_validate({**definition, "id": definition["name"]})
    family = SkillGenerator(spec).family
    rng = random.Random(seed)
    return tuple(family.draw(rng).text for _ in range(n))


def make_corpus(root: Path) -> str:
    plants = [
        Plant(d["name"], natural_instances(d, DEMO_DOCS // every, seed=i), every=every, offset=i)
        for i, (d, every) in enumerate(DEMO_SKILLS)
    ]
    corpus = generate_corpus(
        str(root), n_docs=DEMO_DOCS, plants=plants, seed=0, format="jsonl.gz", n_files=4
    )
    return corpus.uri


def succeeded(resource: Any, what: str) -> bool:
    job = resource.job
    if job is None or job.state != "succeeded":
        console.print(
            f"[red]{what} {job.state if job else 'has no job'}[/red]: {job.error if job else ''}"
        )
        return False
    return True


def artifacts_line(resource: Any) -> str:
    names = ", ".join(a.name for a in resource.job.artifacts)
    return f"   artifacts: {names}  (GET /v1/jobs/{resource.job.id}/artifacts/<name>)"


STUDY_DOSES = [0.5, 1, 2, 3, 4, 6, 8]
"""SCIENCE.md "Studies", protocol (a): the dose threshold of two-digit comparison for nano
(the natural-frequency baseline is the study's own eighth point)."""


def run_dose_study(client: Skillmix, corpus: Any, scan: Any, target: Any, seeds: int,
                   steps: int, doses: list[float] = STUDY_DOSES) -> int:  # fmt: skip
    """`skillmix demo --study dose`: the dose-response of the demo skill, its fit and the
    recommendation (protocol (a); `seeds` per dose)."""
    console.print(
        f"4. studying the dose: {target.name} at {', '.join(f'{d:g}' for d in doses)} "
        f"per batch and the natural baseline, {seeds} seeds each, nano, {steps} steps"
    )
    study = client.studies.create(
        kind="dose_response", skill_ids=[target.id], corpus_id=corpus.id, scan_id=scan.id,
        design={"doses": doses}, sizes=["nano"], seeds_per_point=seeds,
        batch_tokens=BATCH_TOKENS, seq_len=SEQ_LEN, token_budget=steps * BATCH_TOKENS,
        max_batches=steps + HELDOUT_BATCHES, eval_every=max(steps // 20, 1),
    )  # fmt: skip
    study = client.studies.wait(study.id, progress=True)
    if not succeeded(study, "study") or study.report is None:
        return 1
    console.print(study_table(study))
    for body in study.report["skills"].values():
        for size, rec in body["recommendation"].items():
            console.print(
                f"   {size}: {rec.get('text') or 'not determined: ' + rec['undetermined']}"
            )
    console.print(artifacts_line(study))
    typer.echo("study demo finished: registered, scanned, studied the dose")
    return 0


def run_demo(
    data_dir: Path,
    seeds: int = DEMO_SEEDS,
    steps: int = DEMO_STEPS,
    study: str | None = None,
    doses: list[float] | None = None,
) -> int:
    console.print(f"skillmix demo: embedded service under {data_dir.resolve()}")
    with embedded_stack(data_dir) as stack:
        with session_scope() as session:
            # A project per run: running the demo again reuses the data dir, not the names.
            _, key = create_key(session, time.strftime("demo-%Y%m%d-%H%M%S"))
        client = Skillmix(base_url=stack.base_url, api_key=key, timeout=120)
        console.print(f"API at {stack.base_url}\n1. registering {len(DEMO_SKILLS)} skills")
        skills = [client.skills.create(**definition) for definition, _ in DEMO_SKILLS]
        corpus_dir = data_dir.resolve() / "corpora" / "demo-web"
        console.print(f"2. generating a corpus of {DEMO_DOCS:,} documents in {corpus_dir}")
        corpus = client.corpora.create(
            name="demo-web", uri=make_corpus(corpus_dir), format="jsonl.gz"
        )
        console.print(f"3. scanning {corpus.files} files ({corpus.total_bytes:,} bytes)")
        scan = client.scans.create(
            corpus_id=corpus.id, skill_ids=[s.id for s in skills], batch_tokens=BATCH_TOKENS
        )
        scan = client.scans.wait(scan.id, progress=True)
        if not succeeded(scan, "scan") or scan.report is None:
            return 1
        console.print(frequency_table(scan.report, {s.id: s.name for s in skills}))
        console.print(artifacts_line(scan))

        target = skills[0]
        if study == "dose":
            return run_dose_study(client, corpus, scan, target, seeds, steps, doses or STUDY_DOSES)
        console.print(
            f"4. mixing: {target.name} upweighted to {DOSE_PER_BATCH} per batch of "
            f"{BATCH_TOKENS} tokens, uniformly spaced, fresh train-split instances"
        )
        mixture = client.mixtures.create(
            corpus_id=corpus.id,
            scan_id=scan.id,
            batch_tokens=BATCH_TOKENS,
            seq_len=SEQ_LEN,
            # The runs train on `steps` batches; the verification holds out the rest.
            max_batches=steps + HELDOUT_BATCHES,
            plan={
                target.id: {
                    "target": {"per_batch": DOSE_PER_BATCH},
                    "source": "synthesize",
                    "spacing": "uniform",
                    # 2-digit comparison has ~4,000 train instances: 8 a batch repeats each
                    # about 8 times, which the plan warns about (SCIENCE.md section 3).
                    "max_repeats": 10,
                }
            },
        )
        for warning in mixture.warnings:
            console.print(f"   [yellow]warning[/yellow]: {warning['message']}")
        mixture = client.mixtures.wait(mixture.id, progress=True)
        if not succeeded(mixture, "mixture") or mixture.audit is None:
            return 1
        console.print(audit_table(mixture.audit, {s.id: s.name for s in skills}))
        console.print(artifacts_line(mixture))

        console.print(
            f"5. verifying: {seeds} seeds x 2 arms (upweighted, natural-frequency "
            f"baseline built automatically), nano model, {steps} steps each"
        )
        verification = client.verifications.create(
            arms={"upweighted": mixture.id, "baseline": "auto"},
            skill_ids=[target.id],
            sizes=["nano"],
            seeds=list(range(seeds)),
            token_budget=steps * BATCH_TOKENS,
            eval_every=max(steps // 20, 1),
        )
        verification = client.verifications.wait(verification.id, progress=True)
        if not succeeded(verification, "verification") or verification.report is None:
            return 1
        console.print(verdict_table(verification.report, {s.id: s.name for s in skills}))
        console.print(artifacts_line(verification))
    typer.echo("demo finished: registered, scanned, mixed, verified")
    return 0
