"""Every command the docs show runs, against a real ``baige up``.

What is run:
- every line of every ```sh block in README.md, and
- every line of the ```sh blocks in docs/*.md that are marked runnable: an HTML comment
  starting with ``<!-- runnable`` on the line right before the opening fence (it renders as
  nothing on GitHub), e.g. ``<!-- runnable: tests/integration/test_readme.py runs this -->``.

How: the test starts ``baige up`` (a real process, 2 fake nodes of 8 H100) on a free port
with a temporary home, then runs each command with ``bash -c`` from the repository root,
with ``BAIGE_URL``, ``BAIGE_TOKEN`` and ``BAIGE_HOME`` pointing at it and this interpreter's
``bin`` first on ``PATH`` (so ``baige`` is the one under test). Lines ending in ``\\`` are
joined; ``#`` comments are bash's. The placeholders ``JOB_ID``, ``SVC_ID`` and ``NODE``
become, when the command runs, the newest training job, the newest service and the first
node. A command fails the test when it exits non-zero, prints a traceback or runs longer
than ``TIMEOUT_S``.

What is not run is listed in ``SKIP`` with the reason (and ``SETUP`` for what the test does
itself); each entry must still be in the docs, so the list cannot rot silently.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from baige.client import BaigeClient

from .conftest import ROOT_OPT_OUT, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
TIMEOUT_S = 90

# Setup steps the test performs itself instead of running the line.
SETUP = {
    # the test puts the running interpreter's bin directory (its venv) first on PATH
    "source .venv/bin/activate": "PATH",
}

# Commands shown in the docs that this test does not run, and why.
SKIP = {
    # starts the platform in the foreground and never returns; the test starts `baige up`
    "make run": "foreground server",
    # the whole suite, this test included
    "make test": "the whole suite",
    # need a Slurm cluster: tests/integration/test_slurm.py starts one (as root) and covers it
    "export SLURM_CONF=/etc/slurm/slurm.conf": "Slurm",
    "baige up --backend slurm --home /shared/baige": "Slurm",
    # minutes of 2-rank torch training; tests/integration/runtime covers `baige run`
    "baige run --nproc-per-node 2 -- python examples/runtime/train_transformer.py --steps 300": (
        "long training run"
    ),
    "BAIGE_FAULT=kill:rank=1:step=100,hang:rank=0:step=200 baige run --nproc-per-node 2 -- "
    "python examples/runtime/train_transformer.py": "long training run",
    # ~10 s; its printed figures are compared with README.md by
    # tests/unit/cli/test_readme_figures.py, which runs it
    "baige sim demo": "checked by tests/unit/cli/test_readme_figures.py",
    # would drain a node of the platform the later commands share (healed only after 5 min);
    # tests/integration/test_device_health.py runs the same commands on its own platform
    "baige fault inject NODE --card 3 --xid 79": "drains the shared platform's node",
    "baige fault inject NODE --condition thermal-throttle": "cordons the shared platform's node",
    "baige fault clear NODE": "goes with the two above",
    # a platform of four nodes with the pre-flight at three: tests/integration/
    # test_preflight_gang.py starts one and submits the same file
    "baige up --fake-accelerators h100:8 --fake-nodes 4 --preflight-nodes 3 --preflight-mb 4": (
        "foreground server"
    ),
    "baige submit examples/gang-preflight.yaml": "needs three free nodes",
    # a leader and a standby on a PostgreSQL server named db: tests/integration/
    # test_reliability.py runs two `baige up` on one database and kills the leader
    "baige up --db postgresql+psycopg://baige@db:5432/baige --port 8080": "foreground server",
    "baige up --db postgresql+psycopg://baige@db:5432/baige --port 8081": "foreground server",
    # needs a probe on each of four real nodes; tests/integration/test_diagnose_netns.py runs
    # `baige diagnose` on a lab network of namespaces
    "baige diagnose 10.0.0.11:7077 10.0.0.12:7077 10.0.0.13:7077 10.0.0.14:7077": (
        "needs probes on real nodes"
    ),
}


@dataclass(frozen=True)
class Command:
    source: str  # file:line
    text: str  # the command, comment stripped

    def __str__(self) -> str:
        return f"{self.source}: {self.text}"


def _strip_comment(line: str) -> str:
    """The command without a trailing ``  # comment`` (docs put two spaces before one)."""
    return re.split(r"\s{2,}#", line, maxsplit=1)[0].strip()


def _blocks(path: Path, marked_only: bool) -> Iterator[tuple[int, list[str]]]:
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```sh":
            before = next((ln.strip() for ln in reversed(lines[:index]) if ln.strip()), "")
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            if not marked_only or before.startswith("<!-- runnable"):
                yield index + 2, lines[index + 1 : end]
            index = end
        index += 1


def doc_commands() -> list[Command]:
    files = [(ROOT / "README.md", False)] + [
        (path, True) for path in sorted((ROOT / "docs").glob("*.md"))
    ]
    commands: list[Command] = []
    for path, marked_only in files:
        for first, block in _blocks(path, marked_only):
            pending, start = "", first
            for offset, raw in enumerate(block):
                line = raw.rstrip()
                if not pending:
                    start = first + offset
                if line.endswith("\\"):
                    pending += line[:-1].rstrip() + " "
                    continue
                text = _strip_comment(pending + line.strip())
                pending = ""
                if text and not text.startswith("#"):
                    commands.append(Command(f"{path.relative_to(ROOT)}:{start}", text))
    return commands


class Platform:
    """``baige up`` as a user starts it, on a free port with its own home."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / "server.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "baige.cli.main", "up", "--port", str(self.port),
             "--home", str(home), "--fake-accelerators", "h100:8", "--fake-nodes", "2",
             # as root, replicas would run as baige-<tenant>, who cannot run this venv's
             # Python under /root (the fake engine); isolation has its own test
             *ROOT_OPT_OUT],
            env={**os.environ, "BAIGE_HOME": str(home)},
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"baige up did not start:\n{self.log.read_text()}")
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            if httpx.get(f"{self.url}/healthz", timeout=1).status_code != 200:
                return False
            with self.client() as client:
                return len(client.nodes()) == 2
        except (httpx.HTTPError, OSError, Exception):
            return False

    def token(self) -> str:
        return (self.home / "admin-token").read_text().strip()

    def client(self) -> BaigeClient:
        return BaigeClient(self.url, self.token())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        # `baige up` leaves replicas running on stop (the next one re-adopts them)
        for pid_file in (self.home / "runs").glob("*/pid"):
            with contextlib.suppress(OSError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = Platform(tmp_path_factory.mktemp("readme-home"))
    try:
        yield running
    finally:
        running.stop()


def _placeholders(platform: Platform, text: str) -> str:
    if not any(p in text for p in ("JOB_ID", "SVC_ID", "NODE")):
        return text
    with platform.client() as client:
        values = {}
        if "JOB_ID" in text:
            jobs = client.jobs()
            assert jobs, f"{text}: no job to stand for JOB_ID"
            values["JOB_ID"] = max(jobs, key=lambda v: v.created_at).id
        if "SVC_ID" in text:
            services = client.services()
            assert services, f"{text}: no service to stand for SVC_ID"
            values["SVC_ID"] = max(services, key=lambda v: v.created_at).id
        if "NODE" in text:
            values["NODE"] = sorted(n.name for n in client.nodes())[0]
    for name, value in values.items():
        text = re.sub(rf"\b{name}\b", value, text)
    return text


def test_skip_list_names_only_commands_in_the_docs() -> None:
    shown = {c.text for c in doc_commands()}
    stale = [c for c in [*SKIP, *SETUP] if c not in shown]
    assert stale == [], f"in SKIP/SETUP but no longer in the docs: {stale}"


def test_docs_commands_run(platform: Platform) -> None:
    env = {
        **os.environ,
        "BAIGE_URL": platform.url,
        "BAIGE_TOKEN": platform.token(),
        "BAIGE_HOME": str(platform.home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "100",
    }
    commands = [c for c in doc_commands() if c.text not in SKIP and c.text not in SETUP]
    assert any("JOB_ID" in c.text for c in commands), "README's first-job block was not found"
    failures: list[str] = []
    for command in commands:
        text = _placeholders(platform, command.text)
        started = time.monotonic()
        try:
            done = subprocess.run(
                ["bash", "-c", text],
                check=False,
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            failures.append(f"{command}\n  ran past {TIMEOUT_S} s")
            continue
        output = done.stdout + done.stderr
        if done.returncode != 0 or "Traceback" in output:
            failures.append(
                f"{command}\n  ran `{text}`: exit {done.returncode} after "
                f"{time.monotonic() - started:.1f} s\n{output[-2000:]}"
            )
    assert not failures, "\n\n".join(failures)
    # the README ends with `baige uncordon NODE` after a drain: no stale "drained by" reason
    with platform.client() as client:
        assert [n.reason for n in client.nodes() if n.health == "ready"] == ["", ""]
