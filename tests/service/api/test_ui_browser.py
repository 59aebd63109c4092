"""The /ui pages in a real headless Chromium (Debian's `chromium`, driven by Playwright's
Python API; never a downloaded browser) against a real API server (uvicorn on loopback) and
a real worker, on the embedded default (SQLite, filesystem broker).

One walk, so the stack is set up once: sign in; every page on a real scan, mixture and
verification, the numbers shown equal to the API's JSON; charts drawn; a skill named
`<script>` shown as text and never run; a scan started from the form and watched to the
end (live progress over server-sent events, then the report); a mixture planned (dry run)
and built from its form, and a verification started from its form; no console errors.
Screenshots of each page go to $SKILLMIX_TEST_UI_SCREENSHOTS (default: the test's tmp dir).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.ui.app import fmt
from service.cli.embedded import refresh_settings, run_api
from service.worker import runner
from tests.conftest import missing, need_module
from tests.service.conftest import CMP, new_key
from tests.service.stack import stop_process, worker

CHROMIUM = os.environ.get("SKILLMIX_TEST_CHROMIUM", "/usr/bin/chromium")
XSS_NAME = "<script>window.__xss = 1</script>cmp"
TIMEOUT_MS = 60_000


@pytest.fixture
def stack(sqlite_db: str, planted: dict, env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict]:
    """The API on a loopback port with a project holding a succeeded scan, a built mixture
    and baseline, and a finished verification (tiny sizes), all made through the API."""
    env.setenv("SKILLMIX_TRAINING_WORKERS", "1")
    env.setenv("SKILLMIX_UI_SECRET", "test-secret")
    refresh_settings()
    key = new_key("ui-project")
    with run_api() as base_url:
        api = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

        def ok(r: httpx.Response, status: int) -> dict[str, Any]:
            assert r.status_code == status, r.text
            return r.json()  # type: ignore[no-any-return]

        corpus = ok(
            api.post(
                "/v1/corpora", json={"name": "web", "uri": planted["uri"], "format": "jsonl.gz"}
            ),
            201,
        )
        skill = ok(
            api.post(
                "/v1/skills",
                json={
                    "name": "cmp",
                    "detector": {"kind": "builtin"},
                    "generator": {"family": "number_comparison", "params": {}},
                },
            ),
            201,
        )
        xss = ok(
            api.post(
                "/v1/skills",
                json={
                    "name": XSS_NAME,
                    "description": "<img src=x onerror=alert(1)>",
                    "detector": {"kind": "regex", "pattern": r"cmp \d+ \d+ : [<>]"},
                },
            ),
            201,
        )
        scan = ok(
            api.post(
                "/v1/scans",
                json={
                    "corpus_id": corpus["id"],
                    "skill_ids": [skill["id"], xss["id"]],
                    "batch_tokens": 4096,
                },
            ),
            202,
        )
        assert runner.execute(scan["job"]["id"]) == "succeeded"
        plan = {skill["id"]: {"target": {"per_batch": 3}, "source": "synthesize"}}
        mixture = ok(
            api.post(
                "/v1/mixtures",
                json={
                    "corpus_id": corpus["id"],
                    "scan_id": scan["id"],
                    "batch_tokens": 4096,
                    "seq_len": 256,
                    "plan": plan,
                },
            ),
            202,
        )
        ver = ok(
            api.post(
                "/v1/verifications",
                json={
                    "arms": {"upweighted": mixture["id"], "baseline": "auto"},
                    "skill_ids": [skill["id"]],
                    "sizes": ["nano"],
                    "seeds": [0, 1],
                    "token_budget": 4 * 4096,
                    "eval_every": 4,  # evaluations at steps 0 and 4: a curve of two points
                    "device": "cpu",
                },
            ),
            202,
        )
        for mid in ver["arms"].values():
            job = api.get(f"/v1/mixtures/{mid}").json()["job"]
            assert runner.execute(job["id"]) == "succeeded"
        assert runner.execute_all(ver["job"]["id"]) == "succeeded"
        # A real worker for what the forms start (it also drains the messages of the jobs
        # run above, which it finds finished).
        proc = worker(tmp_path / "worker.log")
        try:
            yield {
                "base_url": base_url,
                "api": api,
                "key": key,
                "corpus": corpus,
                "skill": skill,
                "xss": xss,
                "scan": scan,
                "mixture": mixture,
                "verification": ver,
            }
        finally:
            stop_process(proc)
            api.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SKILLMIX_TEST_UI_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cells(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


@pytest.mark.timeout(600)
def test_the_dashboard_in_a_real_browser(stack: dict, shots: Path) -> None:
    sync_api = need_module("playwright.sync_api", "pip install playwright (the dev extra)")
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")
    api, base = stack["api"], stack["base_url"]
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)

            def console(message: Any) -> None:
                # The one error the walk provokes: the 401 of signing in with a wrong key.
                expected = "status of 401" in message.text and "/ui/sign-in" in page.url
                if message.type == "error" and not expected:
                    problems.append(f"{page.url}: {message.text}")

            page.on("console", console)
            page.on("pageerror", lambda e: problems.append(f"{page.url}: {e}"))
            walk(page, api, base, stack, shots)
        finally:
            browser.close()
    assert problems == [], problems


def walk(page: Any, api: httpx.Client, base: str, stack: dict, shots: Path) -> None:
    # No session: every page sends the browser to the sign-in page.
    page.goto(f"{base}/ui/scans/{stack['scan']['id']}")
    assert page.url.startswith(f"{base}/ui/sign-in")
    page.fill("#key", "sk_wrong")
    page.click("#sign-in-form button")
    assert "Invalid API key" in page.inner_text("#form-error")
    page.screenshot(path=str(shots / "sign-in.png"))
    page.fill("#key", stack["key"])
    page.click("#sign-in-form button")
    # Back where it was going, signed in.
    page.wait_for_url(f"{base}/ui/scans/{stack['scan']['id']}")
    assert page.inner_text("#project-name") == "ui-project"

    # The cookie: signed, HttpOnly, SameSite=Strict, and JavaScript cannot read it.
    cookie = next(c for c in page.context.cookies() if c["name"] == "skillmix_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "skillmix_ui" not in page.evaluate("document.cookie")

    check_scan_page(page, api, stack["scan"]["id"], shots / "scan.png")
    # The skill named <script>: shown as text, never run.
    assert XSS_NAME in cells(page, "#frequency tbody td:first-child")
    assert page.evaluate("window.__xss") is None

    # Overview: the jobs the API lists, with their states.
    page.goto(f"{base}/ui")
    listed = {j["id"]: j["state"] for j in api.get("/v1/jobs").json()["data"]}
    shown = {
        row.get_attribute("data-live-job"): row.locator("[data-job-state]").inner_text()
        for row in page.locator("#jobs tbody tr").all()
    }
    assert shown == listed
    page.screenshot(path=str(shots / "overview.png"), full_page=True)

    # Skills: the list, a detail, the preview with its matches highlighted.
    page.goto(f"{base}/ui/skills")
    names = {s["name"] for s in api.get("/v1/skills").json()["data"]}
    assert set(cells(page, "#skills .skill-name")) == names
    assert page.evaluate("window.__xss") is None
    page.click(f"a[href='/ui/skills/{stack['skill']['id']}']")
    assert page.inner_text("#skill-name") == "cmp"
    assert page.inner_text("#family-name") == "number_comparison"
    text = f"before {CMP[0]} middle {CMP[1]} after"
    page.fill("#preview-text", text)
    page.click("#preview-form button")
    preview = api.post(f"/v1/skills/{stack['skill']['id']}/preview", json={"text": text}).json()
    marks = cells(page, "#preview-result mark")
    assert marks == [m["text"] for m in preview["matches"]] and len(marks) == 2
    assert page.inner_text("#preview-result") == text
    page.screenshot(path=str(shots / "skill.png"), full_page=True)

    check_mixture_page(page, api, stack["mixture"]["id"], base, shots / "mixture.png")
    check_verification_page(page, api, stack["verification"]["id"], base, shots)
    # The automatic baseline's page: the plan it was built with, its audit.
    baseline_id = stack["verification"]["arms"]["baseline"]
    page.click(f"a[href='/ui/mixtures/{baseline_id}']")
    assert stack["mixture"]["id"] in page.inner_text("#baseline-of")
    baseline = api.get(f"/v1/mixtures/{baseline_id}").json()
    assert page.inner_text("#plan-shape").startswith(f"{baseline['manifest']['n_batches']} batches")
    assert page.inner_text("#audit-passed") == "passed"

    # A scan started from the form, watched to the end by its server-sent events.
    page.goto(f"{base}/ui/scans")
    page.click("details.form-box summary")
    page.select_option("#scan-corpus", stack["corpus"]["id"])
    page.check(f"input[name=skill_ids][value='{stack['skill']['id']}']")
    page.fill("#scan-batch-tokens", "2048")
    page.click("#scan-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/scans/scan_[0-9a-f]+$"))
    scan_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#frequency", timeout=90_000)  # the page reloads at `end`
    done = api.get(f"/v1/scans/{scan_id}").json()
    assert done["job"]["state"] == "succeeded" and done["batch_tokens"] == 2048
    assert [s["id"] for s in done["skills"]] == [stack["skill"]["id"]]
    check_scan_page(page, api, scan_id, shots / "scan-from-form.png")

    # A mixture from the form: the plan (dry run) first, then the build.
    page.goto(f"{base}/ui/mixtures")
    page.click("details.form-box summary")
    page.select_option("#mix-corpus", stack["corpus"]["id"])
    page.select_option("#mix-scan", stack["scan"]["id"])
    page.select_option("#mix-skill", stack["skill"]["id"])
    page.fill("#mix-target-value", "2")
    page.fill("#mix-batch-tokens", "4096")
    page.fill("#mix-seq-len", "256")
    page.click("#mix-plan")
    assert "dry run" in page.inner_text("h1")
    dry_id = page.inner_text("h1 code")
    dry = api.get(f"/v1/mixtures/{dry_id}").json()
    assert dry["dry_run"] is True and dry["job"] is None
    planned = dry["plan"]["skills"][stack["skill"]["id"]]
    row = f"#plan tr[data-skill='{stack['skill']['id']}']"
    assert page.inner_text(f"{row} [data-field=placements]") == str(planned["placements"])
    assert page.inner_text(f"{row} [data-field=per_batch]") == fmt(planned["per_batch"]) == "2"
    page.screenshot(path=str(shots / "mixture-plan.png"), full_page=True)
    page.click("#mix-build")
    page.wait_for_url(re.compile(r".*/ui/mixtures/mix_[0-9a-f]+$"))
    page.wait_for_selector("#audit", timeout=90_000)
    built_id = page.url.rsplit("/", 1)[1]
    built = api.get(f"/v1/mixtures/{built_id}").json()
    assert built["dry_run"] is False and built["plan"] == dry["plan"]
    assert built["audit"]["passed"] is True

    # A verification from the form (the worker trains it; its page follows it live).
    page.goto(f"{base}/ui/verifications")
    page.click("details.form-box summary")
    page.select_option("#ver-mixture", built_id)
    page.check(f"#verification-form input[name=skill_ids][value='{stack['skill']['id']}']")
    page.fill("#verification-form input[name=seeds]", "0")
    page.fill("#verification-form input[name=token_budget]", str(2 * 4096))
    page.fill("#verification-form input[name=eval_every]", "2")
    page.select_option("#verification-form select[name=device]", "cpu")
    page.click("#verification-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/verifications/ver_[0-9a-f]+$"))
    ver = api.get(f"/v1/verifications/{page.url.rsplit('/', 1)[1]}").json()
    assert ver["arms"]["upweighted"] == built_id and set(ver["arms"]) == {"upweighted", "baseline"}
    assert ver["params"]["seeds"] == [0] and ver["params"]["device"] == "cpu"
    # Not trained here: the walk only needed it started (the worker would train it on).
    baseline = api.get(f"/v1/mixtures/{ver['arms']['baseline']}").json()
    for job_id in (ver["job"]["id"], baseline["job"]["id"]):
        api.post(f"/v1/jobs/{job_id}/cancel")

    # Signing out ends the session: pages send the browser to sign in again.
    page.click("#sign-out")
    page.wait_for_url(re.compile(r".*/ui/sign-in$"))
    page.goto(f"{base}/ui/skills")
    assert "/ui/sign-in" in page.url


def check_scan_page(page: Any, api: httpx.Client, scan_id: str, shot: Path) -> None:
    page.goto(f"{page.url.split('/ui')[0]}/ui/scans/{scan_id}")
    report = api.get(f"/v1/scans/{scan_id}").json()["report"]
    for sid, f in report["skills"].items():
        row = f"#frequency tr[data-skill='{sid}']"
        for field in ("instances", "unique_instances", "matched_docs", "probe_collisions"):
            assert page.inner_text(f"{row} [data-field={field}]") == str(f[field]), field
        for field in ("per_million_tokens", "per_batch"):
            assert page.inner_text(f"{row} [data-field={field}]") == fmt(f[field]), field
        assert page.inner_text(f"{row} [data-field=gap_mean]") == fmt(f["gap_tokens"]["mean"])
    # One gap histogram per skill with gaps, drawn (a uPlot canvas each).
    with_gaps = sum(1 for f in report["skills"].values() if f["gap_histogram"])
    assert page.locator("#gap-charts canvas").count() == with_gaps > 0
    # Sortable: by instances, descending on the second click.
    head = page.locator("#frequency th", has_text="instances").first
    head.click()
    head.click()
    values = [int(v) for v in cells(page, "#frequency [data-field=instances]")]
    assert values == sorted(values, reverse=True)
    page.screenshot(path=str(shot), full_page=True)


def check_mixture_page(
    page: Any, api: httpx.Client, mixture_id: str, base: str, shot: Path
) -> None:
    page.goto(f"{base}/ui/mixtures/{mixture_id}")
    mixture = api.get(f"/v1/mixtures/{mixture_id}").json()
    for sid, a in mixture["audit"]["skills"].items():
        row = f"#audit tr[data-skill='{sid}']"
        expect = {
            "planned_placements": str(a["planned"]["placements"]),
            "placed_placements": str(a["placed"]["placements"]),
            "planned_per_batch": fmt(a["planned"]["per_batch"]),
        }
        for field, value in expect.items():
            assert page.inner_text(f"{row} [data-field={field}]") == value, field
    assert page.inner_text("#audit-passed") == (
        "passed" if mixture["audit"]["passed"] else "failed"
    )
    # Composition over batches: one chart per dosed skill, from composition.json.
    page.wait_for_selector("#composition-charts canvas")
    assert page.locator("#composition-charts canvas").count() == len(mixture["plan"]["skills"])
    comp = page.evaluate(f"fetch('/ui/mixtures/{mixture_id}/composition.json').then(r => r.json())")
    sid = next(iter(mixture["plan"]["skills"]))
    assert comp["n_batches"] == mixture["manifest"]["n_batches"]
    assert (
        sum(comp["skills"][sid]["placed"]) == mixture["audit"]["skills"][sid]["builder_placements"]
    )
    page.screenshot(path=str(shot), full_page=True)


def check_verification_page(
    page: Any, api: httpx.Client, ver_id: str, base: str, shots: Path
) -> None:
    page.goto(f"{base}/ui/verifications")
    assert page.locator(f"a[href='/ui/verifications/{ver_id}']").count() == 1
    page.goto(f"{base}/ui/verifications/{ver_id}")
    report = api.get(f"/v1/verifications/{ver_id}").json()["report"]
    for v in report["verdicts"]:
        row = f"#verdicts tr[data-arm='{v['arm']}'][data-size='{v['size']}']"
        assert page.inner_text(f"{row} [data-field=p_retained]") == fmt(v["p_retained"])
        lo, hi = v["ci95"]
        assert page.inner_text(f"{row} [data-field=ci95]") == f"[{fmt(lo)}, {fmt(hi)}]"
        assert (
            page.inner_text(f"{row} [data-field=n_retained]")
            == f"{v['n_retained']} / {v['n_seeds']}"
        )
        assert page.inner_text(f"{row} [data-field=threshold]") == fmt(v["threshold"])
        assert page.inner_text(f"{row} [data-field=verdict]") == v["verdict"]
    rules = cells(page, "#verdicts [data-field=rule]")
    assert rules == [v["rule"] for v in report["verdicts"]]
    # P(retained) per skill, strip plot and curves per skill x size: uPlot canvases.
    assert page.locator("#p-retained-charts canvas").count() == 1
    assert page.locator("#strip-charts canvas").count() == 1
    assert page.locator("#curve-charts canvas").count() == 1
    # The curves hold every run's evaluations: one series per run (legend rows), and
    # a hover over the curve chart shows values in its legend.
    legend = page.locator("#curve-charts .u-legend .u-series")
    assert legend.count() == 1 + len(report["runs"])
    assert all(len(r["evals"]) >= 2 for r in report["runs"])
    page.locator("#curve-charts .u-over").hover()
    page.screenshot(path=str(shots / "verification.png"), full_page=True)
