"""`skillmix study`: start a study (and wait for its recommendation), show, list, apply."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from skillmix_client import NOT_GIVEN
from skillmix_client.cli._common import (
    ApiKey,
    AsJson,
    BaseUrl,
    Quiet,
    Wait,
    client,
    emit,
    finish_job,
    parse_doses,
    rows_table,
)
from skillmix_client.cli._runs import resolve_skills

study_app = typer.Typer(
    help="Studies: how much of a skill, how evenly spaced, a model size needs.",
    invoke_without_command=True,
)


def _num(x: Any) -> str:
    return "" if x is None else f"{x:.3g}"


def _interval(value: Any) -> str:
    if not isinstance(value, dict) or "mean" not in value:
        return ""
    low, high = value.get("ci95", [None, None])
    return f"{_num(value['mean'])} [{_num(low)}, {_num(high)}]"


def repetition_table(study: Any) -> Table:
    """Per skill, size and pool: copies per instance, held-out and seen readouts, and the
    general loss minus the baseline's on the same seed."""
    names = {s["id"]: s.get("name", s["id"]) for s in study.skills}
    rows = []
    for sid, body in study.report["skills"].items():
        for size, trend in body.get("trend", {}).items():
            points = {p["pool_size"]: p for p in body.get("points", []) if p["size"] == size}
            for row in trend.get("points", []):
                point = points.get(row["pool_size"], {})
                rows.append([
                    names.get(sid, sid), size,
                    "fresh" if row["pool_size"] is None else str(row["pool_size"]),
                    _num(row.get("copies")), _num(point.get("readout")),
                    _num(point.get("seen_readout")), _interval(row.get("loss_vs_baseline")),
                ])  # fmt: skip
    columns = ["skill", "size", "pool", "copies", "held-out", "seen", "loss - baseline [95% CI]"]
    return rows_table(f"study {study.id}", columns, rows)


def _slope(trend: Any, key: str = "slope") -> str:
    if not isinstance(trend, dict) or trend.get(key) is None:
        return ""
    low, high = trend.get("ci95", [None, None])
    return f"{trend[key]:+.3g} [{_num(low)}, {_num(high)}]"


def spacing_table(study: Any) -> Table:
    """Per skill, size and dosing period: P(retained) with its Wilson interval, the mean
    final readout and forgetting between exposures; then each trend per doubling of the
    period (P's logistic slope, the readout's and forgetting's least-squares slopes)."""
    names = {s["id"]: s.get("name", s["id"]) for s in study.skills}
    rows = []
    for sid, body in study.report["skills"].items():
        for point in body.get("points", []):
            low, high = point.get("ci95", [None, None])
            rows.append([
                names.get(sid, sid), point["size"], str(point["period"]),
                f"{_num(point['p_retained'])} [{_num(low)}, {_num(high)}]",
                _num(point.get("readout")), _num(point.get("forgetting")),
            ])  # fmt: skip
        for size, trend in body.get("trend", {}).items():
            rows.append([
                names.get(sid, sid), size, "trend / doubling",
                _slope(trend.get("p_trend"), "value"), _slope(trend.get("readout_trend")),
                _slope(trend.get("forgetting_trend")),
            ])  # fmt: skip
    columns = ["skill", "size", "period", "P(retained) [95% CI]", "readout", "forgetting"]
    return rows_table(f"study {study.id}", columns, rows)


def study_table(study: Any) -> Table:
    """Per skill and size: the recommendation (or why there is none) and the fit."""
    if not study.report:
        return rows_table("study", ["id", "state"], [[study.id, study.job.state]])
    if study.kind == "repetition":
        return repetition_table(study)
    if study.kind == "spacing":
        return spacing_table(study)
    names = {s["id"]: s.get("name", s["id"]) for s in study.skills}
    rows = []
    for sid, body in study.report["skills"].items():
        for size, rec in body.get("recommendation", {}).items():
            fit = body.get("fit", {}).get(size, {})
            ed50 = fit.get("ed50", {})
            low, high = ed50.get("ci95", [None, None])
            rows.append([
                names.get(sid, sid), size,
                f"{_num(ed50.get('value'))} [{_num(low)}, {_num(high)}]" if ed50 else "",
                rec.get("text") or f"not determined: {rec.get('undetermined')}",
            ])  # fmt: skip
    return rows_table(f"study {study.id}", ["skill", "size", "ED50 [95% CI]", "answer"], rows)


def parse_pool_sizes(text: str) -> list[int | None]:
    """`fresh,400,40,4` -> [None, 400, 40, 4] (`fresh` or `null`: no pool)."""
    out: list[int | None] = []
    for part in (p.strip() for p in text.split(",")):
        if part.lower() in ("fresh", "null", "none"):
            out.append(None)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise typer.BadParameter(
                f"--pool-sizes: {part!r} is neither a number of instances nor fresh"
            )
    return out


def parse_bounds(text: str) -> tuple[float, float]:
    """`0.25:16` -> (0.25, 16.0): an adaptive design's dose bounds, lowest first."""
    try:
        low, high = (float(part) for part in text.split(":"))
    except ValueError:
        raise typer.BadParameter(
            f"--adaptive: {text!r} is not MIN:MAX (instances per batch), e.g. 0.25:16"
        ) from None
    if not 0 < low < high:
        raise typer.BadParameter(f"--adaptive: need 0 < MIN < MAX, got {text!r}")
    return low, high


@study_app.callback()
def study_create(
    ctx: typer.Context,
    kind: Annotated[
        str, typer.Option(help="dose_response, spacing, repetition or size_transfer.")
    ] = "",
    skill: Annotated[list[str] | None, typer.Option("--skill", help="Skill (repeatable).")] = None,
    corpus: Annotated[str, typer.Option(help="Corpus id.")] = "",
    scan: Annotated[str, typer.Option(help="A succeeded scan of the corpus.")] = "",
    doses: Annotated[str, typer.Option(help="Instances per batch, e.g. 0.5,1,2,4,8.")] = "",
    dose: Annotated[float | None, typer.Option(help="Spacing, repetition: the fixed dose.")] = None,
    every: Annotated[
        list[str] | None, typer.Option(help="Spacing: a schedule N/K (repeatable), e.g. 8/4.")
    ] = None,
    pool_sizes: Annotated[
        str,
        typer.Option(
            help="Repetition: unique instances per pool, fresh for none, e.g. fresh,400,40,4."
        ),
    ] = "",  # fmt: skip
    adaptive: Annotated[
        str,
        typer.Option(
            help="Dose-response placed look by look between MIN:MAX instances per batch "
            "(instead of --doses), e.g. 0.25:16."
        ),
    ] = "",
    max_runs: Annotated[int, typer.Option(help="Adaptive: run budget per size.")] = 64,
    factor: Annotated[
        float, typer.Option(help="Adaptive: stop once the ED interval is this wide.")
    ] = 2.0,
    size: Annotated[list[str] | None, typer.Option(help="Model size (repeatable).")] = None,
    seeds_per_point: int = 8,
    token_budget: int | None = None,
    wait: Wait = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Start a study: `skillmix study --kind dose_response --skill NAME --corpus ID --scan ID
    --doses 0.5,1,2,4,8 --wait` (spacing: `--dose 2 --every 2/1 --every 8/4`; repetition:
    `--dose 2 --pool-sizes fresh,400,40,4`; adaptive: `--adaptive 0.25:16 --max-runs 64`)."""
    if ctx.invoked_subcommand is not None:
        return
    if not (kind and skill and corpus and scan):
        raise typer.BadParameter("give --kind, --skill, --corpus and --scan (or a subcommand)")
    if kind == "spacing":
        if dose is None or not every:
            raise typer.BadParameter("a spacing study needs --dose and --every N/K (repeatable)")
        pairs = [e.split("/", 1) for e in every]
        design: dict[str, Any] = {
            "dose": dose,
            "schedules": [{"n": int(n), "k": int(k)} for n, k in pairs],
        }
    elif kind == "repetition":
        if dose is None or not pool_sizes:
            raise typer.BadParameter(
                "a repetition study needs --dose and --pool-sizes, e.g. fresh,400,40,4"
            )
        design = {"dose": dose, "pool_sizes": parse_pool_sizes(pool_sizes)}
    elif adaptive:
        if doses:
            raise typer.BadParameter("give --doses or --adaptive MIN:MAX, not both")
        low, high = parse_bounds(adaptive)
        design = {"adaptive": {"min": low, "max": high, "max_runs": max_runs, "factor": factor}}
    else:
        if not doses:
            raise typer.BadParameter("give --doses, e.g. 0.5,1,2,4,8 (or --adaptive MIN:MAX)")
        design = {"doses": parse_doses(doses)}
    with client(base_url, api_key, as_json) as c:
        study = c.studies.create(
            kind=kind, skill_ids=resolve_skills(c, skill), corpus_id=corpus, scan_id=scan,
            design=design, sizes=size or NOT_GIVEN, seeds_per_point=seeds_per_point,
            token_budget=token_budget or NOT_GIVEN,
        )  # fmt: skip
        if not wait:
            emit(study, True, quiet=quiet)
            return
        study = c.studies.wait(study.id, progress=not (as_json or quiet))
    finish_job(study, as_json, study_table, quiet)


@study_app.command("show")
def study_show(
    study_id: str, as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None
) -> None:
    """One study: its recommendations once analysed."""
    with client(base_url, api_key, as_json) as c:
        study = c.studies.retrieve(study_id)
    emit(study, as_json, study_table)


@study_app.command("list")
def study_list(as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """This project's studies."""
    with client(base_url, api_key, as_json) as c:
        items = list(c.studies.list())
    emit(items, as_json, lambda xs: rows_table(
        "studies", ["id", "kind", "state"], [[s.id, s.kind, s.job.state if s.job else ""]
                                             for s in xs]))  # fmt: skip


@study_app.command("apply")
def study_apply(
    study_id: str,
    size: Annotated[str, typer.Option(help="The model size whose recommendation to build.")],
    corpus: Annotated[str, typer.Option(help="The corpus to build the mixture from.")],
    scan: Annotated[str, typer.Option(help="A succeeded scan of that corpus.")],
    margin: Annotated[str, typer.Option(help="upper (ED's upper 95% bound) or estimate.")] = (
        "upper"
    ),
    as_json: AsJson = False,
    quiet: Quiet = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Build the production mixture at the study's recommended dose."""
    with client(base_url, api_key, as_json) as c:
        mixture = c.studies.apply(study_id, size=size, corpus_id=corpus, scan_id=scan,
                                  margin=margin)  # fmt: skip
    emit(mixture, True, quiet=quiet)


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
