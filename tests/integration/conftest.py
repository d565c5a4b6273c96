"""Real services for the integration tests: SQLite files and the PostgreSQL server on
127.0.0.1:5432, and a real control plane (uvicorn on a free port, real processes).

Under CI=true the PostgreSQL tests fail, rather than skip, when the server is unreachable.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from baige.client import BaigeClient
from baige.control.platform import Platform, PlatformOptions
from baige.control.preflight_gate import PreflightSettings
from baige.hw.discovery import parse_fake_groups
from baige.server.app import create_app

PG_ADMIN_URL = os.environ.get("BAIGE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# one database per test process, so that test runs side by side never drop each other's schema
PG_TEST_DB = f"baige_test_{os.getpid()}"


@pytest.fixture(scope="session", autouse=True)
def _drop_pg_test_db() -> Iterator[None]:
    """Drop this process's PostgreSQL test database at the end, if it made one."""
    yield
    with contextlib.suppress(Exception):
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{PG_TEST_DB}" WITH (FORCE)'))
        admin.dispose()


def _pg_url() -> str:
    """A clean PostgreSQL database for one test (the schema is dropped and recreated)."""
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": PG_TEST_DB}
            ).first()
            if not exists:
                connection.execute(text(f'CREATE DATABASE "{PG_TEST_DB}"'))
        admin.dispose()
    except Exception as err:
        message = f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {err}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    url = make_url(PG_ADMIN_URL).set(database=PG_TEST_DB).render_as_string(hide_password=False)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every store and API test runs against both databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'baige.db'}"
    return _pg_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'baige.db'}"


# `baige up` options that keep replicas as the test's own user when it runs as root (where
# the default maps each tenant to an unprivileged user)
ROOT_OPT_OUT = ["--tenant-user", "*=root"] if os.getuid() == 0 else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RunningPlatform:
    """A platform with its API served by uvicorn in a thread, for in-process tests."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        platform.controller.api_url = self.url  # where `baige run` in a replica reports
        app = create_app(platform.db, platform.service, pass_seconds=platform.recent_pass_seconds,
                         follow_poll_s=0.1, board=platform.board)  # fmt: skip
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", timeout_keep_alive=30
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> RunningPlatform:
        self.platform.start()
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.platform.stop()

    def client(self, token: str | None = None) -> BaigeClient:
        admin = (self.platform.options.home / "admin-token").read_text().strip()
        return BaigeClient(self.url, token or admin)


@pytest.fixture
def make_platform(tmp_path: Path) -> Iterator[object]:
    """Build and start platforms; all are stopped (and their processes killed) at the end."""
    started: list[RunningPlatform] = []

    def build(db_url: str, *, nodes: int = 2, accel: str = "h100:8", heartbeat_timeout: float = 10.0,
              home: Path | None = None, health_policy: object = None,
              preflight: PreflightSettings | None = None) -> RunningPlatform:  # fmt: skip
        options = PlatformOptions(
            health_policy=health_policy,  # type: ignore[arg-type]
            # off unless a test asks: real checks spawn torch processes per node
            preflight=preflight or PreflightSettings(min_nodes=0),
            db_url=db_url,
            home=home or tmp_path / f"home-{uuid.uuid4().hex[:6]}",
            accelerators=parse_fake_groups(accel)[0],
            accelerator_groups=groups if len(groups := parse_fake_groups(accel)) > 1 else (),
            nodes=nodes,
            heartbeat_timeout=heartbeat_timeout,
            interval=0.2,
        )
        running = RunningPlatform(Platform(options)).__enter__()
        started.append(running)
        return running

    yield build
    for running in started:
        running.__exit__()
        _kill_runs(running.platform.options.home / "runs")


def _kill_runs(runs: Path) -> None:
    """Kill every replica a test left running (tests must not leak processes)."""
    import signal  # noqa: PLC0415

    for pid_file in runs.glob("*/pid"):
        with contextlib.suppress(OSError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def wait_for(predicate: object, timeout: float = 30.0, interval: float = 0.1) -> object:
    """Poll until ``predicate()`` is truthy; return its value, or fail the test."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        assert callable(predicate)
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s (last value: {last!r})")
