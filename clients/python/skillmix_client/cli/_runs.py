"""`skillmix` client verbs for the work that runs as jobs: scans, mixtures, verifications,
and the tables that show their results (frequency, audit, verdicts)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from skillmix_client import NOT_GIVEN, NotGiven
from skillmix_client.cli._common import (
    ApiKey,
    AsJson,
    BaseUrl,
    Quiet,
    Wait,
    client,
    dump,
    emit,
    err_console,
    finish_job,
    read_definition,
    rows_table,
)
from skillmix_client.reports import MixtureAudit, ScanReport, VerificationReport

scans_app = typer.Typer(help="Scans: list and show.", no_args_is_help=True)

Tokenizer = Annotated[
    str | None,
    typer.Option(
        help="A Hugging Face tokenizer.json (or its folder) on the server, under an allowed "
        "root: count in its tokens (default: UTF-8 bytes). Scan and mixture must name the same."
    ),
]
EosToken = Annotated[
    str | None, typer.Option(help="The tokenizer's end-of-document token, if it has no known one.")
]


def tokenizer_body(path: str | None, eos_token: str | None) -> Any:
    """The request's `tokenizer` for --tokenizer/--eos-token (not sent when not given)."""
    if path is None:
        return NOT_GIVEN
    return {"kind": "hf", "path": path, **({"eos_token": eos_token} if eos_token else {})}


def resolve_skills(c: Any, refs: list[str]) -> list[str]:
    """Skill ids for names or ids, so scripts and plan files can say `compare-2-digit`."""
    by_name = {s.name: s.id for s in c.skills.list()}
    return [by_name.get(ref, ref) for ref in refs]


def _num(x: float | None, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}g}"


def frequency_table(report: ScanReport, names: dict[str, str]) -> Table:
    """The scan's frequency report as one row per skill."""
    rows = []
    for skill_id, r in report["skills"].items():
        lo, hi = r["per_million_tokens_ci95"]
        gaps = r.get("gap_batches") or {}
        rows.append(
            [
                names.get(skill_id, skill_id),
                r["instances"],
                r["unique_instances"],
                r["max_repeats"],
                f"{_num(r['per_million_tokens'])} [{_num(lo)}, {_num(hi)}]",
                _num(r["per_batch"]),
                _num(gaps.get("median")),
                _num(gaps.get("p90")),
                _num(gaps.get("cv"), 2),
                r["probe_collisions"],
            ]
        )
    corpus = report.get("corpus", {})
    title = (
        f"frequency: {corpus.get('docs_scanned', 0):,} docs, "
        f"{corpus.get('tokens_scanned', 0):,} tokens; batch = {corpus.get('batch_tokens')} "
        "tokens; gaps between instances in batches; the 95% CI allows for instances "
        "clustering within documents"
    )
    return rows_table(
        title,
        [
            "skill",
            "found",
            "unique",
            "max rep",
            "per M tokens [95% CI]",
            "per batch",
            "gap med",
            "gap p90",
            "gap cv",
            "probe hits",
        ],
        rows,
    )


def skill_names(resource: Any) -> dict[str, str]:
    """Skill id -> name, from the skills a scan or verification lists (id, version, name)."""
    return {s["id"]: s["name"] for s in dump(resource).get("skills") or [] if s.get("name")}


def scan_table(scan: Any) -> Table:
    if scan.report:
        return frequency_table(scan.report, skill_names(scan))
    return rows_table(
        "scan",
        ["id", "corpus", "state", "progress"],
        [[scan.id, scan.corpus_id, scan.job.state, f"{100 * scan.job.progress.fraction:.0f}%"]],
    )


@scans_app.command("create")
def scan_create(
    corpus_id: Annotated[str, typer.Option("--corpus", help="Corpus id.")],
    skill: Annotated[list[str], typer.Option("--skill", help="Skill id (repeatable).")],
    batch_tokens: int = 262_144,
    tokenizer: Tokenizer = None,
    eos_token: EosToken = None,
    wait: Wait = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Scan a corpus for skills (ids or names); with --wait, follow it and print the
    frequency table."""
    with client(base_url, api_key, as_json) as c:
        scan = c.scans.create(
            corpus_id=corpus_id,
            skill_ids=resolve_skills(c, skill),
            batch_tokens=batch_tokens,
            tokenizer=tokenizer_body(tokenizer, eos_token),
        )
        if not wait:
            emit(scan, as_json, scan_table, quiet)
            return
        scan = c.scans.wait(scan.id, progress=not (as_json or quiet))
    finish_job(scan, as_json, scan_table, quiet)


@scans_app.command("list")
def scans_list(as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """This project's scans."""
    with client(base_url, api_key, as_json) as c:
        scans = list(c.scans.list())
    emit(
        scans,
        as_json,
        lambda ss: rows_table(
            "scans", ["id", "corpus", "state"], [[s.id, s.corpus_id, s.job.state] for s in ss]
        ),
    )


@scans_app.command("show")
def scans_show(
    scan_id: str, as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None
) -> None:
    """One scan: its frequency table once done."""
    with client(base_url, api_key, as_json) as c:
        emit(c.scans.retrieve(scan_id), as_json, scan_table)


# -- mixtures and verifications --------------------------------------------------------

mixtures_app = typer.Typer(help="Mixtures: list and show.", no_args_is_help=True)
verifications_app = typer.Typer(help="Verifications: list and show.", no_args_is_help=True)


def audit_table(audit: MixtureAudit, names: dict[str, str]) -> Table:
    """Planned vs achieved dose and spacing per skill, from a mixture's audit."""
    rows = []
    for skill_id, a in audit["skills"].items():
        placed, gaps = a["placed"]["per_batch"], a.get("gap_batches") or {}
        rows.append(
            [
                names.get(skill_id) or a.get("name") or skill_id,
                a.get("spacing"),
                _num(a["planned"]["per_batch"]),
                _num(placed["mean"]),
                f"{placed['min']}..{placed['max']}",
                _num(a["natural"]["per_batch"]),
                _num(gaps.get("median")),
                _num(gaps.get("cv"), 2),
                "yes" if a["passed"] else "NO",
            ]
        )
    title = (
        f"audit of the built mixture ({audit['n_batches']:,} batches, tolerance "
        f"{audit['tolerance']:.0%}): {'passed' if audit['passed'] else 'FAILED'}"
    )
    return rows_table(
        title,
        [
            "skill",
            "spacing",
            "planned/batch",
            "placed/batch",
            "range",
            "natural/batch",
            "gap med",
            "gap cv",
            "passed",
        ],
        rows,
    )


def _strata_cell(v: dict[str, Any]) -> str:
    """Each hard stratum's mean metric, `!` when a passing seed is at chance on it."""
    cells = []
    for name, check in (v.get("strata") or {}).items():
        mean = (check.get("summary") or {}).get("mean")
        flag = "!" if check.get("flagged_seeds") else ""
        cells.append(f"{name} {_num(mean, 2)}{flag}")
    return "; ".join(cells)


def verdict_table(report: VerificationReport, names: dict[str, str]) -> Table:
    """One row per skill x size x arm: the metric and its chance level, P(retained) with
    its interval, the format rate, the hard strata, and the verdict."""
    rows = []
    for v in report["verdicts"]:
        lo, hi = v["ci95"]
        effect = v.get("effect_vs_baseline") or {}
        diff = effect.get("mean_accuracy_diff")
        fmt = ((v.get("readouts") or {}).get("format_rate") or {}).get("mean")
        rows.append(
            [
                names.get(v["skill_id"], v["skill_id"]),
                v["size"],
                v["arm"],
                v.get("metric") or "exact",
                _num(v.get("chance"), 3),
                _num(v["threshold"], 2),
                f"{v['n_retained']}/{v['n_seeds']}",
                f"{v['p_retained']:.2f} [{lo:.2f}, {hi:.2f}]",
                _num(v["mean_accuracy"], 2),
                "" if diff is None else f"{diff:+.2f}",
                _num(fmt, 2),
                _strata_cell(v),
                _num(v.get("mean_general_loss"), 3),
                v["verdict"],
            ]
        )
    return rows_table(
        "verdicts (held-out probes; a seed is retained when its metric >= threshold, "
        "threshold = chance + 0.5 x (1 - chance) unless given; retained if the Wilson "
        "lower bound >= 0.5; `!` = a passing seed at chance on a hard stratum)",
        [
            "skill",
            "size",
            "arm",
            "metric",
            "chance",
            "threshold",
            "seeds",
            "P(retained) [95% CI]",
            "mean",
            "vs baseline",
            "format",
            "strata",
            "general loss",
            "verdict",
        ],
        rows,
    )


def result_table(resource: Any) -> Table:
    """A finished mixture's audit or verification's verdicts, else the job's state."""
    if getattr(resource, "audit", None):
        return audit_table(resource.audit, {})
    if getattr(resource, "report", None):
        return verdict_table(resource.report, skill_names(resource))
    return rows_table("job", ["id", "state"], [[resource.id, resource.job.state]])


def _output(uri: str | None, exports: list[str] | None) -> dict[str, Any] | NotGiven:
    output: dict[str, Any] = {"uri": uri} if uri else {}
    if exports:
        output["exports"] = exports
    return output or NOT_GIVEN


@mixtures_app.command("create")
def mix_create(
    corpus_id: Annotated[str, typer.Option("--corpus", help="Corpus id.")],
    scan_id: Annotated[str, typer.Option("--scan", help="A succeeded scan of the corpus.")],
    plan: Annotated[Path, typer.Option(help="YAML/JSON file: dose per skill (id or name).")],
    batch_tokens: int = 262_144,
    seq_len: int = 512,
    seed: int = 0,
    output: Annotated[
        str | None, typer.Option(help="Output folder (or an allowed s3://... prefix).")
    ] = None,
    exports: Annotated[
        list[str] | None,
        typer.Option(
            "--export",
            help="Also write the mixture, in its order, as mds, datatrove or bin (repeat the "
            "option for several); turn your trainer's shuffling off.",
        ),
    ] = None,
    tokenizer: Tokenizer = None,
    eos_token: EosToken = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only.")] = False,
    wait: Wait = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Plan and build a mixture; --dry-run prints the plan and its warnings only."""
    doses = read_definition(plan)
    with client(base_url, api_key, as_json) as c:
        mixture = c.mixtures.create(
            corpus_id=corpus_id,
            scan_id=scan_id,
            plan=dict(zip(resolve_skills(c, list(doses)), doses.values(), strict=True)),
            batch_tokens=batch_tokens,
            seq_len=seq_len,
            seed=seed,
            dry_run=dry_run,
            output=_output(output, exports),
            tokenizer=tokenizer_body(tokenizer, eos_token),
        )
        if not (as_json or quiet):
            for warning in mixture.warnings:
                err_console.print(
                    f"[yellow]warning[/yellow]: {warning['message']}", highlight=False
                )
        if dry_run or not wait:
            emit(mixture, True, quiet=quiet)
            return
        mixture = c.mixtures.wait(mixture.id, progress=not (as_json or quiet))
    finish_job(
        mixture,
        as_json,
        result_table,
        quiet,
    )


@verifications_app.command("create")
def verify_create(
    arm: Annotated[
        list[str],
        typer.Option(help="NAME=MIXTURE_ID (repeatable); baseline=auto builds the baseline."),
    ],
    skill: Annotated[list[str], typer.Option("--skill", help="Skill id (repeatable).")],
    size: Annotated[list[str], typer.Option(help="Model size (repeatable).")] = ["nano"],  # noqa: B006
    seeds: Annotated[int, typer.Option(help="Seeds 0..N-1 (without --min/--max-seeds).")] = 5,
    token_budget: int | None = None,
    eval_every: int = 200,
    metric: Annotated[
        str | None, typer.Option(help="forced_choice or exact (default: per skill).")
    ] = None,
    seed_scope: Annotated[
        str | None,
        typer.Option(help="What the seeds vary: init, data or both (default: both)."),
    ] = None,
    lr_schedule: Annotated[
        str | None, typer.Option(help="cosine, constant or wsd (default: cosine).")
    ] = None,
    min_seeds: Annotated[
        int | None, typer.Option(help="Sequential looks: seeds of the first (default 10).")
    ] = None,
    max_seeds: Annotated[
        int | None, typer.Option(help="Sequential looks: seeds of the last (default 40).")
    ] = None,
    wait: Wait = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Train small models on the arms and judge whether they keep the skills."""
    arms = dict(a.split("=", 1) for a in arm if "=" in a)
    if len(arms) != len(arm):
        raise typer.BadParameter("each --arm is NAME=MIXTURE_ID")
    with client(base_url, api_key, as_json) as c:
        ver = c.verifications.create(
            arms=arms,
            skill_ids=resolve_skills(c, skill),
            sizes=size,
            seeds=list(range(seeds)),
            eval_every=eval_every,
            token_budget=token_budget or NOT_GIVEN,
            metric=metric or NOT_GIVEN,
            seed_scope=seed_scope or NOT_GIVEN,
            lr_schedule=lr_schedule or NOT_GIVEN,
            min_seeds=min_seeds or NOT_GIVEN,
            max_seeds=max_seeds or NOT_GIVEN,
        )
        if not wait:
            emit(ver, True, quiet=quiet)
            return
        ver = c.verifications.wait(ver.id, progress=not (as_json or quiet))
    finish_job(
        ver,
        as_json,
        result_table,
        quiet,
    )


@mixtures_app.command("show")
def mixtures_show(
    mixture_id: str, as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None
) -> None:
    """One mixture: its audit once built (JSON: plan, manifest, audit)."""
    with client(base_url, api_key, as_json) as c:
        m = c.mixtures.retrieve(mixture_id)
    emit(m, as_json or m.audit is None, lambda x: audit_table(x.audit, {}))


@verifications_app.command("show")
def verifications_show(
    verification_id: str, as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None
) -> None:
    """One verification: its verdicts once done."""
    with client(base_url, api_key, as_json) as c:
        v = c.verifications.retrieve(verification_id)
    emit(v, as_json or v.report is None, lambda x: verdict_table(x.report, skill_names(x)))


@mixtures_app.command("list")
def mixtures_list(
    as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None
) -> None:
    """This project's mixtures."""
    with client(base_url, api_key, as_json) as c:
        items = list(c.mixtures.list())
    emit(
        items,
        as_json,
        lambda ms: rows_table(
            "mixtures",
            ["id", "scan", "dry run", "state"],
            [[m.id, m.scan_id, m.dry_run, m.job.state if m.job else "-"] for m in ms],
        ),
    )


@verifications_app.command("list")
def verifications_list(
    as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None
) -> None:
    """This project's verifications."""
    with client(base_url, api_key, as_json) as c:
        items = list(c.verifications.list())
    emit(
        items,
        as_json,
        lambda vs: rows_table(
            "verifications",
            ["id", "arms", "state"],
            [[v.id, ", ".join(v.arms or {}), v.job.state if v.job else "-"] for v in vs],
        ),
    )


def register(app: typer.Typer) -> None:
    app.add_typer(scans_app, name="scans")
    app.add_typer(mixtures_app, name="mixtures")
    app.add_typer(verifications_app, name="verifications")
    app.command("scan", help="Scan a corpus for skills (same as `scans create`).")(scan_create)
    app.command("mix", help="Plan and build a mixture (same as `mixtures create`).")(mix_create)
    app.command("verify", help="Verify by training (same as `verifications create`).")(
        verify_create
    )
