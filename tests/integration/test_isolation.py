"""Replicas against the control plane: what a tenant's job can read, what it inherits, what
a killed shim leaves behind, and which working directories are accepted (issue 12)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from baige.api.loader import load_specs
from baige.backends.local import replica_processes
from baige.control.platform import Platform, PlatformOptions
from baige.hw.discovery import parse_fake

from .conftest import RunningPlatform, _kill_runs, wait_for

PROBE = r"""
import os, sys
home = sys.argv[1]
for name in ("admin-token", "baige.db", "runs"):
    path = os.path.join(home, name)
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(1)
        print("READ", name)
    except OSError as err:
        print("DENIED", name, type(err).__name__)
print("MARKER", os.environ.get("BAIGE_TEST_UP_MARKER"))
print("TOKEN", os.environ.get("BAIGE_TOKEN", "")[:3])
print("UID", os.getuid(), "HOME", os.environ.get("HOME"))
open(os.path.join(os.environ["HOME"], "made-by-job"), "w").write("ok")
"""


def _job(name: str, queue: str, command: list[str], working_dir: str = "/tmp") -> object:
    quoted = ", ".join(json.dumps(a) for a in command)
    (spec,) = load_specs(
        f"kind: TrainingJob\nname: {name}\nqueue: {queue}\nmax_restarts: 3\n"
        f"accelerators: {{count: 1, types: [h100]}}\nworking_dir: {working_dir}\n"
        f"command: [{quoted}]\n"
    )
    return spec


# the job runs as another user, who may not reach this interpreter (a pyenv under /root)
PYTHON = shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin") or sys.executable


@pytest.fixture
def isolated(sqlite_url: str, monkeypatch: pytest.MonkeyPatch):
    """A platform as `baige up` runs it as root: one Unix user per tenant."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("running replicas as other users needs root and useradd")
    monkeypatch.setenv("BAIGE_TEST_UP_MARKER", "inherited")  # the control plane's env
    home = Path(tempfile.mkdtemp(prefix="baige-iso-"))  # the tenants' users must reach it
    mask = os.umask(0o022)
    os.umask(mask)
    options = PlatformOptions(
        db_url=f"sqlite:///{home / 'baige.db'}",
        home=home,
        accelerators=parse_fake("h100:8"),
        nodes=1,
        interval=0.2,
        tenant_users={},
    )
    running = RunningPlatform(Platform(options)).__enter__()
    try:
        yield running
    finally:
        running.__exit__()
        _kill_runs(home / "runs")
        os.umask(mask)
        shutil.rmtree(home, ignore_errors=True)


def _tenant_client(running: RunningPlatform, tenant: str):
    admin = running.client()
    queue = f"kind: Queue\nname: q-{tenant}\ntenant: {tenant}\n"
    token = (running.platform.options.home / "admin-token").read_text().strip()
    response = httpx.post(
        f"{running.url}/v1/queues",
        content=queue.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
    )
    assert response.status_code == 201, response.text
    return running.client(admin.create_token(f"user-{tenant}", tenant).token)


def _output(running: RunningPlatform, job_id: str) -> str:
    runs = running.platform.options.home / "runs"
    return "".join(p.read_text() for p in runs.glob(f"{job_id}*/output.log"))


def test_a_tenants_job_reads_no_control_plane_secret_nor_inherits_its_env(isolated) -> None:
    alice = _tenant_client(isolated, "team-a")
    home = str(isolated.platform.options.home)
    job = alice.submit(_job("probe", "q-team-a", [PYTHON, "-c", PROBE, home]))
    wait_for(lambda: alice.job(job.id).phase in ("succeeded", "failed"), timeout=60)
    out = _output(isolated, job.id)
    assert alice.job(job.id).phase == "succeeded", out
    for name in ("admin-token", "baige.db", "runs"):
        assert f"DENIED {name}" in out, out
    assert "MARKER None" in out  # baige up's own environment did not reach the job
    assert "TOKEN brt" in out or "TOKEN " in out
    assert "UID 0 " not in out
    assert (isolated.platform.options.home / "tenants" / "team-a" / "made-by-job").exists()


def test_a_killed_shim_leaves_exactly_one_copy_after_the_restart(isolated) -> None:
    alice = _tenant_client(isolated, "team-a")
    pids = isolated.platform.options.home / "tenants" / "team-a" / "pids"
    code = (
        "import os, time\n"
        "open(os.path.join(os.environ['HOME'], 'pids'), 'a').write(f'{os.getpid()}\\n')\n"
        "time.sleep(120)\n"
    )
    job = alice.submit(_job("sleeper", "q-team-a", [PYTHON, "-c", code]))
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 1, timeout=60)
    first = int(pids.read_text().split()[0])
    runs = isolated.platform.options.home / "runs"
    (rundir,) = [p for p in runs.glob(f"{job.id}*") if (p / "pid").exists()]
    os.kill(int((rundir / "pid").read_text()), signal.SIGKILL)
    wait_for(lambda: len(pids.read_text().split()) == 2, timeout=90)
    assert not Path(f"/proc/{first}").exists()  # the old copy died before the new one started
    second = int(pids.read_text().split()[1])
    assert Path(f"/proc/{second}").exists()
    marked = [
        pid
        for replica in runs.glob(f"{job.id}*")
        for pid in replica_processes(replica.name)
        if b"time.sleep(120)" in Path(f"/proc/{pid}/cmdline").read_bytes()
        and b"baige.backends.shim" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert marked == [second]
    assert alice.job(job.id).restarts == 1


@pytest.mark.parametrize(
    ("working_dir", "words"),
    [("/nonexistent/dir", "does not exist"), ("../../..", "absolute path")],
)
def test_a_bad_working_dir_is_a_400_naming_it(make_platform, sqlite_url, working_dir, words):
    running = make_platform(sqlite_url)
    token = (running.platform.options.home / "admin-token").read_text().strip()
    body = (
        "kind: TrainingJob\nname: bad\nqueue: default\naccelerators: {count: 1, types: [h100]}\n"
        f"working_dir: {working_dir}\ncommand: ['true']\n"
    )
    response = httpx.post(
        f"{running.url}/v1/jobs",
        content=body.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
    )
    assert response.status_code == 400, response.text
    assert "working_dir" in response.text and words in response.text
