"""The web console in a real browser (Debian's Chromium driven by Playwright), and /metrics
parsed with prometheus_client's parser. Screenshots of every page are saved as artifacts
(tests/artifacts/console/, or $BAIGE_ARTIFACTS) for a person to look at."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = (
    Path(os.environ.get("BAIGE_ARTIFACTS", Path(__file__).parents[1] / "artifacts")) / "console"
)
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

JOB = """kind: TrainingJob
name: from-the-page
queue: default
replicas: 1
accelerators: {count: 1, types: [h100]}
command: [python3, -c, "import time; [print('step', i, flush=True) or time.sleep(0.5) for i in range(8)]"]
"""


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        message = f"Chromium is not installed at {CHROMIUM} (make test installs Debian's chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def login(page, url: str, token: str) -> None:
    page.goto(url + "/")
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_selector("h1:has-text('Overview')")


def test_operator_walkthrough(browser, make_platform, sqlite_url: str) -> None:
    running = make_platform(sqlite_url)
    client = running.client()
    token = client.token or ""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(running.url + "/")
    page.fill("#token", "baige_wrong")
    page.click("#login")
    page.wait_for_selector("#login-error:has-text('refused')")
    shot(page, "login-refused")
    login(page, running.url, token)
    # a sleeping job to cancel later, submitted through the API
    sleeper = client.submit(
        __import__("baige.api", fromlist=["load_specs"]).load_specs(
            JOB.replace("from-the-page", "to-cancel").replace("range(8)", "range(600)")
        )[0]
    )
    # submit a job from the page, with a typo first: the error names the line and field
    page.click("a[href='#/submit']")
    page.fill("#spec", JOB.replace("replicas: 1", "replicas: 1\nreplica: 2"))
    page.click("#submit")
    page.wait_for_selector("#submit-error:has-text('replica')")
    assert "line 5" in page.inner_text("#submit-error")
    shot(page, "submit-error")
    page.fill("#spec", JOB)
    page.click("#submit")
    page.wait_for_selector("h1:has-text('from-the-page')")
    # the page follows the job through its phases (it may be quick: running or already done)
    page.wait_for_selector("p .phase.running, p .phase.succeeded", timeout=30_000)
    page.wait_for_selector("#logs:has-text('step 1')", timeout=30_000)
    shot(page, "job-running")
    page.wait_for_selector("p .phase.succeeded", timeout=30_000)
    page.wait_for_selector("#logs:has-text('step 7')", timeout=10_000)
    shot(page, "job-succeeded")
    # cancel the other one from its page
    page.goto(f"{running.url}/#/jobs/{sleeper.id}")
    page.wait_for_selector("#cancel", timeout=20_000)
    page.click("#cancel")
    page.wait_for_selector("p .phase.cancelled", timeout=30_000)
    assert wait_for(lambda: client.job(sleeper.id).phase == "cancelled")
    # the lists
    page.click("a[href='#/jobs']")
    page.wait_for_selector("td:has-text('from-the-page')")
    shot(page, "jobs")
    page.click("a[href='#/queues']")
    page.wait_for_selector("td:has-text('default')")
    shot(page, "queues")
    # cordon a node
    page.click("a[href='#/nodes']")
    first = client.nodes()[0].name
    page.click(f"tr[data-node='{first}'] button[data-act='cordon']")
    page.wait_for_selector(f"tr[data-node='{first}'] .phase.cordoned")
    assert client.node(first).cordoned
    shot(page, "nodes")
    page.click("a[href='#/events']")
    page.wait_for_selector("td:has-text('Cordoned')")
    shot(page, "events")
    page.click("a[href='#/overview']")
    page.wait_for_selector(".card .big")
    assert "h100" in page.inner_text("main")
    shot(page, "overview")
    page.close()


def test_what_baige_run_reports_shows_on_the_job_and_the_overview(
    browser, make_platform, sqlite_url: str
) -> None:
    from baige.api import load_specs  # noqa: PLC0415

    running = make_platform(sqlite_url)
    client = running.client()
    job = client.submit(
        load_specs(JOB.replace("from-the-page", "pretraining").replace("range(8)", "range(600)"))[0]
    )
    assert wait_for(lambda: client.job(job.id).phase == "running")
    import time  # noqa: PLC0415

    started = time.time() - 40  # 131 steps of 0.2 s in 40 s: ETTR about 65%
    events = [
        {"ts": started, "event": "run_started", "ranks": 8},
        {"event": "fault_detected", "kind": "crash", "ranks": [3], "detect_s": 0.4,
         "message": "rank 3 killed by SIGKILL"},
        {"event": "restart", "attempt": 1, "restarts_left": 2, "reason": "crash"},
        {"event": "restored", "step": 120, "lost_steps": 2, "recovery_s": 6.5,
         "source": "memory"},
        {"event": "progress", "step": 130, "steps_per_s": 4.2, "median_step_s": 0.2,
         "loss": 2.5},
    ]  # fmt: skip
    from baige.store.tables import WorkloadRow  # noqa: PLC0415

    with running.platform.db.session() as session:  # only the job's report token may post
        row = session.get(WorkloadRow, job.id)
        assert row is not None and row.report_token
        report_token = "baige_run_" + row.report_token
    answer = httpx.post(
        f"{running.url}/v1/jobs/{job.id}/runtime-events",
        json={"node": client.nodes()[0].name, "events": events},
        headers={"Authorization": f"Bearer {report_token}"},
    )
    assert answer.status_code == 200, answer.text
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    login(page, running.url, client.token or "")
    page.goto(f"{running.url}/#/jobs/{job.id}")
    page.wait_for_selector("#runtime")
    card = page.inner_text("#runtime")
    assert "step 130" in card and "1 restart(s)" in card and "crash 1" in card
    assert "lost steps 2" in card and "recovery ≤ 6.5 s" in card
    page.wait_for_selector("td:has-text('FaultDetected')")
    shot(page, "job-runtime")
    page.goto(f"{running.url}/#/overview")
    page.wait_for_selector("h2:has-text('Training progress')")
    row = page.inner_text(f"tr:has(a[href='#/jobs/{job.id}'])")
    ettr = float(row.split("\t")[2].rstrip("%"))
    assert "pretraining" in row and 55 < ettr <= 65.5  # falls as the wall clock runs on
    assert "rank 3 killed" in page.inner_text("main")  # an open fault
    shot(page, "overview-training")
    client.cancel(job.id)
    page.close()


def test_a_tenant_sees_only_its_own_jobs(browser, make_platform, sqlite_url: str) -> None:
    running = make_platform(sqlite_url)
    admin = running.client()
    http = httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {admin.token}"})
    for tenant in ("team-a", "team-b"):
        queue = f"kind: Queue\nname: {tenant}\ntenant: {tenant}\n"
        assert (
            http.post(
                "/v1/queues", content=queue, headers={"Content-Type": "application/yaml"}
            ).status_code
            == 201
        )
    alice = running.client(admin.create_token("alice", "team-a").token)
    bob = admin.create_token("bob", "team-b").token
    from baige.api import load_specs  # noqa: PLC0415

    secret = alice.submit(
        load_specs(
            JOB.replace("queue: default", "queue: team-a").replace("from-the-page", "alices-secret")
        )[0]
    )
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    login(page, running.url, bob)
    page.click("a[href='#/jobs']")
    page.wait_for_selector("h1:has-text('Jobs')")
    assert "alices-secret" not in page.inner_text("main")
    page.goto(f"{running.url}/#/jobs/{secret.id}")
    page.wait_for_selector(".error:has-text('not found')")
    shot(page, "tenant-isolation")
    page.close()


def test_a_newcomers_pages(browser, make_platform, sqlite_url: str) -> None:
    """What a new user meets on a 16-card cluster: a job that can never fit says so, the
    why-work-waits list names the jobs, the chart has a time axis and agrees with the cards,
    a job page shows its command and spec, a command that cannot start says why."""
    from baige.api import load_specs  # noqa: PLC0415

    running = make_platform(sqlite_url)
    client = running.client()
    busy = client.submit(
        load_specs(
            JOB.replace("from-the-page", "busy").replace("range(8)", "range(600)")
            .replace("count: 1", "count: 8")
        )[0]
    )  # fmt: skip
    huge = client.submit(
        load_specs(
            JOB.replace("from-the-page", "too-big").replace("replicas: 1", "replicas: 3")
            .replace("count: 1", "count: 8")
        )[0]
    )  # fmt: skip
    typo = client.submit(
        load_specs(
            JOB.replace("from-the-page", "typo").replace(
                JOB.splitlines()[-1], "command: [trian.py, --steps, '10']"
            )
        )[0]
    )
    service = client.submit_file(Path(__file__).parents[2] / "examples" / "inference-toy.yaml")[0]
    assert wait_for(lambda: client.job(busy.id).phase == "running")
    assert wait_for(lambda: client.job(huge.id).reason_code == "NeverFits")
    assert wait_for(lambda: client.job(typo.id).phase == "failed")
    assert wait_for(lambda: client.job(service.id).phase == "running", timeout=30)
    # a request through the stable endpoint, and the samples the controller keeps every 30 s
    auth = {"Authorization": f"Bearer {client.token}"}
    assert wait_for(lambda: httpx.post(f"{running.url}/s/{service.id}/predict", headers=auth,
                                       json={"prompt": "abc"}).status_code == 200)  # fmt: skip
    import time  # noqa: PLC0415

    from baige.control.usage import record_service_load  # noqa: PLC0415

    for back in (600, 300):
        with running.platform.db.session() as session:
            record_service_load(session, time.time() - back, running.platform.board.figures())
    view = client.job(huge.id)
    assert view.phase == "pending"  # nodes may be added: it waits, but says it cannot fit now
    assert "needs 24 h100 cards in one gang; the whole cluster has 16" in view.reason
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    login(page, running.url, client.token or "")
    page.wait_for_selector(f"#waiting a[href='#/jobs/{huge.id}']")
    assert "NeverFits" in page.inner_text("#waiting")
    window = page.inner_text("#chart-window")
    assert "since the first sample" in window or "last" in window, window
    assert page.locator("svg.chart text").count() >= 4  # time and card labels
    cards = page.inner_text(".card .big")
    chart = page.text_content("svg.chart") or ""
    assert f"now: {cards.split(' / ')[0]} allocated" in chart, (cards, chart)  # the chart ends
    # where the cards are; and how they split between training and inference, on a time axis
    kinds = page.text_content("#chart-kinds") or ""
    assert "now: 8 training, 0.5 inference" in kinds, kinds  # busy's 8, toy-chat's 2 x 0.25
    assert page.locator("#chart-kinds path[data-series='inference']").count() == 1
    assert page.locator("#chart-kinds text").count() >= 4  # time and card labels
    assert "cards by kind" in page.inner_text("#kinds-window")
    headings = page.locator("main h2").all_inner_texts()
    assert headings[1] == "Cards: training vs inference", headings
    shot(page, "overview-waiting")
    page.goto(f"{running.url}/#/jobs/{huge.id}")
    page.wait_for_selector("#why:has-text('can never be placed')")
    assert page.inner_text("#command").startswith("python3 -c \"import time; [print('step'")
    page.click("#spec summary")
    assert "replicas: 3" in page.inner_text("pre.spec")
    shot(page, "job-never-fits")
    page.goto(f"{running.url}/#/jobs/{busy.id}")
    page.wait_for_selector("p .phase.running")
    assert "admitted: admitted" not in page.inner_text("#why").lower()
    shot(page, "job-admitted")
    page.goto(f"{running.url}/#/jobs/{typo.id}")
    page.wait_for_selector("p .phase.failed")
    page.wait_for_selector("#logs:has-text('cannot start')", timeout=10_000)
    assert "trian.py --steps 10" in page.inner_text("#command")
    assert "cannot start 'trian.py'" in page.inner_text("#why")
    assert client.job(typo.id).restarts == 0  # a missing binary is not retried
    shot(page, "job-cannot-start")
    page.click("a[href='#/services']")
    page.wait_for_selector("td:has-text('toy-chat')")
    row = f"tr[data-id='{service.id}']"
    assert page.inner_text(f"{row} td.replicas") == "2 / 2"
    assert float(page.inner_text(f"{row} td.qps")) >= 0  # a number: the gateway served it
    shot(page, "services")
    page.goto(f"{running.url}/#/services/{service.id}")
    page.wait_for_selector("h1:has-text('toy-chat')")
    page.wait_for_selector("#chart-replicas")
    endpoint = page.inner_text("#endpoint")
    assert f"{running.url}/s/{service.id}" in endpoint and f"{running.url}/s/toy-chat" in endpoint
    assert f"{running.url}/s/toy-chat/" in page.inner_text("#curl")
    assert "$BAIGE_TOKEN" in page.inner_text("#curl")  # never the user's own token
    replicas = page.text_content("#chart-replicas") or ""
    assert "now: 2 running, 2 wanted" in replicas, replicas
    for series in ("wanted", "running"):  # two samples, then the live point
        points = page.locator(f"#chart-replicas path[data-series='{series}']")
        assert (points.get_attribute("d") or "").count("L") >= 4, series
    assert page.locator("#chart-load path[data-series='requests_per_second']").count() == 1
    assert page.locator("#chart-latency").count() == 1
    assert "Admitted" in page.inner_text("#scaling")
    assert "in flight" in page.inner_text("#load-now")  # the gateway's figures now
    shot(page, "service")
    page.click("a[href='#/submit']")
    page.wait_for_selector("#spec")
    shot(page, "submit")
    for job in (busy, huge):
        client.cancel(job.id)
    client.cancel(service.id)
    page.close()


def test_metrics_parse_and_count(make_platform, sqlite_url: str) -> None:
    running = make_platform(sqlite_url)
    client = running.client()
    client.submit_file(Path(__file__).parents[2] / "examples" / "train-cpu.yaml")
    wait_for(lambda: client.jobs()[0].phase in ("running", "succeeded"))
    prometheus = client.create_token("prometheus", None, metrics=True).token
    text = httpx.get(f"{running.url}/metrics", headers={"Authorization": f"Bearer {prometheus}"})
    assert text.status_code == 200, text.text
    families = {f.name: f for f in text_string_to_metric_families(text.text)}
    cards = {
        (s.labels["type"], s.labels["state"]): s.value
        for s in families["baige_accelerators"].samples
    }
    assert cards[("h100", "total")] == 16
    assert {"baige_nodes", "baige_workloads", "baige_queue_accelerators", "baige_queue_pending",
            "baige_controller_pass_seconds", "baige_api_request_seconds"} <= set(families)  # fmt: skip
    requests = [
        s for s in families["baige_api_request_seconds"].samples if s.name.endswith("_count")
    ]
    assert any(s.labels["route"] == "/v1/jobs" for s in requests)
