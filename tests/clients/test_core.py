"""The transport-free parts: request building, retry policy, SSE decoding, progress."""

from __future__ import annotations

import email.utils
import io
import json

import httpx
import pytest
from skillmix_client import NOT_GIVEN
from skillmix_client._core import backoff, parse_retry_after, should_retry
from skillmix_client._progress import ProgressBar, render
from skillmix_client._sse import JobEvents, SSEDecoder
from skillmix_client.resources import corpora, jobs, mixtures, scans, skills, verifications
from skillmix_client.types import Job

JOB = {"id": "job_1", "kind": "sleep", "state": "running", "progress": {"fraction": 0.5}}


def test_retry_after_seconds_dates_and_cap() -> None:
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("3600") == 60.0
    assert parse_retry_after(email.utils.formatdate(1000.0 + 7, usegmt=True), now=1000.0) == 7.0
    assert parse_retry_after(email.utils.formatdate(990.0, usegmt=True), now=1000.0) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_backoff_grows_with_jitter_and_a_ceiling() -> None:
    for attempt, base in [(0, 0.5), (1, 1.0), (2, 2.0), (10, 8.0)]:
        delays = {backoff(attempt) for _ in range(50)}
        assert all(0.75 * base <= d <= base for d in delays) and len(delays) > 1


@pytest.mark.parametrize(
    ("status", "headers", "retry"),
    [
        (408, {}, True),
        (409, {}, True),
        (429, {}, True),
        (500, {}, True),
        (503, {}, True),
        (400, {}, False),
        (404, {}, False),
        (422, {}, False),
        (409, {"x-should-retry": "false"}, False),
        (400, {"x-should-retry": "true"}, True),
    ],
)
def test_which_statuses_are_retried(status: int, headers: dict[str, str], retry: bool) -> None:
    assert should_retry(httpx.Response(status, headers=headers)) is retry


def test_sse_decoder() -> None:
    decoder = SSEDecoder()
    lines = [": keep-alive", "", "event: progress", "id: 7", "data: a", "data:b", "", "data: x"]
    events = [e for e in map(decoder.feed, lines) if e]
    assert [(e.event, e.data, e.id) for e in events] == [("progress", "a\nb", "7")]
    assert decoder.feed("\r\n") == events[0].__class__("message", "x", "7")


def test_job_events_skip_repeats_and_stop_at_end() -> None:
    parser = JobEvents()
    data = json.dumps(JOB)
    stream = [f"event: progress\ndata: {data}\n", f"event: end\ndata: {data}\n"]
    jobs_seen = [parser.feed(line) for chunk in stream for line in chunk.split("\n")]
    assert [j.id for j in jobs_seen if j] == ["job_1"] and parser.ended


def snapshot(state: str, fraction: float, message: str = "") -> Job:
    return Job.model_validate(
        {**JOB, "state": state, "progress": {"fraction": fraction, "message": message}}
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_bar_on_a_pipe_prints_sparsely() -> None:
    job = Job.model_validate(JOB)
    assert render(job) == f"job_1 [{'#' * 15}{'-' * 15}]  50.0% running"
    out, clock = io.StringIO(), Clock()  # StringIO is not a terminal
    bar = ProgressBar(out, clock=clock)
    bar.update(snapshot("queued", 0.0))
    for step in range(201):  # a job reporting every 0.5% each second
        clock.now += 1.0
        bar.update(snapshot("running", step / 200, f"step {step}/200"))
    for second in range(95):  # then 95 seconds at 100% with a changing message
        clock.now += 1.0
        bar.update(snapshot("running", 1.0, f"writing report ({second}s)"))
    bar.update(snapshot("succeeded", 1.0, "done"))
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split("] ")[1] for line in lines] == [
        "  0.0% queued",
        "  0.0% running: step 0/200",  # a new state
        *(f"{p:5.1f}% running: step {p * 2}/200" for p in range(10, 101, 10)),  # each 10%
        *(f"100.0% running: writing report ({s}s)" for s in (29, 59, 89)),  # each 30 s
        "100.0% succeeded: done",
    ]


def test_progress_bar_on_a_pipe_prints_a_held_back_line_when_closed() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, clock=Clock())
    for fraction in (0.5, 0.53, 0.55):  # a wait that times out, say
        bar.update(snapshot("running", fraction))
        bar.update(snapshot("running", fraction))  # repeats never print
    bar.close()
    first, last = render(snapshot("running", 0.5)), render(snapshot("running", 0.55))
    assert out.getvalue() == f"{first}\n{last}\n"


def test_progress_bar_on_a_terminal_redraws_every_change() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    bar = ProgressBar(out)
    for fraction in (0.5, 0.53, 0.53, 0.55):
        bar.update(snapshot("running", fraction))
    bar.close()
    assert out.getvalue().count("\r") == 3 and out.getvalue().endswith("\n")


def test_request_shapes_follow_the_design() -> None:
    call = skills.create(name="m", detector={"kind": "builtin"}, probe={"fraction": 0.5})
    assert (call.method, call.path) == ("POST", "/v1/skills")
    assert call.body == {"name": "m", "detector": {"kind": "builtin"}, "probe": {"fraction": 0.5}}
    patch = skills.update("skill_1", generator=None, description=NOT_GIVEN)
    assert (patch.method, patch.path, patch.body) == (
        "PATCH",
        "/v1/skills/skill_1",
        {"generator": None},
    )
    assert skills.preview("a/b", text="1 + 2").path == "/v1/skills/a%2Fb/preview"
    assert skills.families().path == "/v1/skill-families"
    assert corpora.delete("c1").method == "DELETE"
    scan = scans.create(corpus_id="c1", skill_ids=("s1",), extra_body={"sample": 10})
    assert scan.body == {"corpus_id": "c1", "skill_ids": ["s1"], "sample": 10}
    mix = mixtures.create(corpus_id="c1", plan={"s1": {"target": {"per_batch": 4}}}, seed=0)
    assert mix.body == {"corpus_id": "c1", "seed": 0, "plan": {"s1": {"target": {"per_batch": 4}}}}
    ver = verifications.create(
        arms={"up": "m1", "baseline": "auto"}, skill_ids=["s1"], seeds=range(3)
    )
    assert ver.body and ver.body["seeds"] == [0, 1, 2] and "sizes" not in ver.body
    ver = verifications.create(
        arms={"up": "m1"}, skill_ids=["s1"], seed_scope="data", min_seeds=5, max_seeds=20,
        lr_schedule="wsd", metric="exact",
    )  # fmt: skip
    assert ver.body == {
        "arms": {"up": "m1"}, "skill_ids": ["s1"], "seed_scope": "data", "min_seeds": 5,
        "max_seeds": 20, "lr_schedule": "wsd", "metric": "exact",
    }  # fmt: skip
    assert jobs.list_(limit=2).params == {"limit": 2}
    assert jobs.cancel("job_1").path == "/v1/jobs/job_1/cancel"
