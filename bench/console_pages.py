"""Benchmark: how long each console page takes to render at 10,000 nodes and 5,000 jobs.

Starts ``baige up`` in its own process (SQLite, the declared fake backend: nothing is
launched), registers 10,000 nodes and submits 5,000 jobs through the API (as
``bench/control_plane.py`` does), then drives Debian's Chromium with Playwright: for every
page, the time from changing the route to the page's content being in the DOM and painted
(two animation frames), which includes its API calls. Each page is measured several times in
rotation; the median and the worst are printed. Target (issue 7): no page over 1 s.

    python bench/console_pages.py [--nodes 10000] [--jobs 5000] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from control_plane import node, submit

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

# Set the route, wait for the page's <h1> (every page renders in one innerHTML write after its
# API calls), then for two frames so that layout and paint are counted.
MEASURE = """async (hash) => {
  const main = document.querySelector("main");
  main.innerHTML = "";
  const t0 = performance.now();
  const done = new Promise((resolve) => {
    const seen = new MutationObserver(() => {
      if (main.querySelector("h1")) { seen.disconnect(); resolve(); }
    });
    seen.observe(main, { childList: true, subtree: true });
  });
  location.hash = hash;
  await done;
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return performance.now() - t0;
}"""


def start(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "baige.cli.main", "up", "--port", str(port),
         "--home", str(home), "--backend", "fake", "--heartbeat-timeout", "1000000",
         "--fake-accelerators", "h100:8"],
        stdout=subprocess.DEVNULL, stderr=open(home / "server.log", "wb"),
    )  # fmt: skip
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"baige up did not start; see {home / 'server.log'}")
        time.sleep(0.2)


def populate(url: str, token: str, nodes: int, jobs: int) -> str:
    """Register the nodes (batches of 500), submit the jobs; return one job's id."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=300) as http:
        for first in range(0, nodes, 500):
            batch = [node(i) for i in range(first, min(first + 500, nodes))]
            http.post("/v1/nodes", json={"nodes": batch}).raise_for_status()
        asyncio.run(submit(url, token, jobs))
        time.sleep(3)  # a few controller passes: jobs admitted, usage sampled
        return str(http.get("/v1/jobs", params={"limit": 1}).json()[0]["id"])


def measure(url: str, token: str, pages: list[str], runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    times: dict[str, list[float]] = {page: [] for page in pages}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url + "/")
        page.fill("#token", token)
        page.click("#login")
        page.wait_for_selector("h1:has-text('Overview')")
        for _ in range(runs):
            for hash_ in pages:
                times[hash_].append(float(page.evaluate(MEASURE, hash_)))
        browser.close()
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=10_000)
    p.add_argument("--jobs", type=int, default=5_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"Chromium is not installed at {CHROMIUM}: apt-get install chromium")
    home = Path(tempfile.mkdtemp())
    server, url = start(home)
    try:
        token = (home / "admin-token").read_text().strip()
        started = time.perf_counter()
        job_id = populate(url, token, args.nodes, args.jobs)
        loaded = time.perf_counter() - started
        pages = ["#/overview", "#/queues", "#/nodes", "#/nodes?offset=9900", "#/jobs",
                 f"#/jobs/{job_id}", "#/services", "#/events"]  # fmt: skip
        times = measure(url, token, pages, args.runs)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    rows = {
        page: {"median_ms": round(statistics.median(t), 1), "max_ms": round(max(t), 1)}
        for page, t in times.items()
    }
    if args.json:
        print(json.dumps({"nodes": args.nodes, "jobs": args.jobs, "pages": rows}, indent=2))
        return
    print(f"{args.nodes:,} nodes and {args.jobs:,} jobs loaded in {loaded:.0f} s; "
          f"{args.runs} renders per page (target: every page under 1,000 ms)")  # fmt: skip
    for page, row in rows.items():
        print(f"  {page:<28} median {row['median_ms']:7.1f} ms   worst {row['max_ms']:7.1f} ms")


if __name__ == "__main__":
    main()
