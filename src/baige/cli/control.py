"""The commands that talk to a running control plane, and ``baige up`` that runs one."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from baige.api.loader import SpecError
from baige.api.views import SplitView, WorkloadView
from baige.cli.output import (
    console,
    err_console,
    fail,
    print_json,
    print_json_line,
    print_table,
    say,
)
from baige.client import DEFAULT_URL, BaigeClient, BaigeError

if TYPE_CHECKING:  # the server's modules stay out of the other commands' imports
    from baige.control.platform import Platform, PlatformOptions

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


T = TypeVar("T")


def _client() -> BaigeClient:
    return BaigeClient()


def _token_source() -> str:
    """Where the CLI read its token from, as the BaigeClient looks for it."""
    from baige.store.db import home_dir  # noqa: PLC0415

    if os.environ.get("BAIGE_TOKEN"):
        return "the BAIGE_TOKEN variable"
    path = home_dir() / "admin-token"
    if path.is_file():
        return str(path)
    return f"nowhere (BAIGE_TOKEN is unset and there is no {path})"


def _fail(error: Exception, json_output: bool = False) -> NoReturn:
    """End with an API, spec or input error, in the one shape ``baige.cli.output`` defines."""
    if isinstance(error, BaigeError):
        message, detail = error.message, str(error)
        if error.status == 401:
            hint = (
                f" (the token was read from {_token_source()}). Set BAIGE_TOKEN to a valid "
                "token: `baige up` saves its admin token in ~/.baige/admin-token, or in "
                "DIR/admin-token with --home DIR (export BAIGE_TOKEN=$(cat DIR/admin-token))"
            )
            message, detail = message + hint, detail.replace(error.message, message + hint, 1)
        fail(message, json_output, status=error.status, problems=error.problems, detail=detail)
    if isinstance(error, SpecError):
        fail(str(error), json_output, problems=error.as_dicts())
    fail(str(error), json_output)


def _ask(call: Callable[[BaigeClient], T], json_output: bool = False) -> T:
    """One exchange with the control plane; an API error exits with its message."""
    try:
        with _client() as client:
            return call(client)
    except BaigeError as err:
        _fail(err, json_output)


def _age(ts: float | None) -> str:
    if ts is None:
        return "-"
    seconds = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cards(view: WorkloadView) -> str:
    spec = view.spec
    accelerators = spec.get("accelerators")
    if not isinstance(accelerators, dict):
        return "-"
    if accelerators.get("count") == 0:  # a CPU-only workload: say what it asks for instead
        resources = spec.get("resources")
        cpu = resources.get("cpu") if isinstance(resources, dict) else None
        return f"{view.replicas}×{cpu:g} CPU" if isinstance(cpu, int | float) and cpu else "CPU"
    share = accelerators.get("share")
    per = f"{share:g}" if isinstance(share, float) else str(accelerators.get("count", 1))
    types = accelerators.get("types") or []
    accel = view.accelerator_type or "/".join(str(t) for t in types)
    return f"{view.replicas}×{per} {accel}"


def _runtime_line(view: WorkloadView) -> str:
    """``baige run``'s figures in one line: where it is, what went wrong, what it cost."""
    rt = view.runtime
    assert rt is not None
    parts = [f"baige run: {rt.state}, step {rt.last_step}"]
    if rt.steps_per_s is not None:
        parts.append(f"{rt.steps_per_s:.2f} steps/s")
    if rt.loss is not None:
        parts.append(f"loss {rt.loss:.4g}")
    if rt.faults:
        parts.append("faults " + ", ".join(f"{k} {n}" for k, n in sorted(rt.faults.items())))
    parts.append(f"{rt.restarts} restart(s), {rt.lost_steps} step(s) lost")
    if rt.max_detection_s is not None:
        parts.append(f"detection ≤ {rt.max_detection_s:.1f} s")
    if rt.max_recovery_s is not None:
        parts.append(f"recovery ≤ {rt.max_recovery_s:.1f} s")
    if rt.ettr is not None:
        parts.append(f"ETTR ~{rt.ettr:.1%}")
    return "; ".join(parts)


def _split_line(split: SplitView) -> str:
    """A job spanning types: how its global batch is shared (the plan its replicas read)."""
    parts = "; ".join(
        f"{p.type}: {len(p.ranks)} rank(s) × "
        + "/".join(str(m) for m in dict.fromkeys(p.micro_batches))
        + f" micro-batches ({p.samples} samples)"
        for p in split.parts
    )
    return (
        f"split (BAIGE_HETERO_PLAN): global batch {split.global_batch} in micro-batches of "
        f"{split.micro_batch_size}; {parts}"
    )


def _workload_table(title: str, views: list[WorkloadView]) -> None:
    print_table(
        title,
        ["ID", "NAME", "QUEUE", "PHASE", "SIZE", "AGE", "REASON"],
        ((v.id, v.name, v.queue, v.phase, _cards(v), _age(v.created_at), v.reason) for v in views),
    )


def submit(
    files: Annotated[list[Path], typer.Argument(help="YAML spec files (jobs, services, queues).")],
    idempotency_key: Annotated[
        str | None, typer.Option(help="Retrying with the same key never submits twice.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Submit specs; a job or service without working_dir runs in this directory."""
    results = []
    with _client() as client:
        for path in files:
            try:
                results += client.submit_file(path, idempotency_key=idempotency_key)
            except (SpecError, BaigeError) as err:
                _fail(err, json_output)
    if json_output:
        print_json([r.model_dump() for r in results])
        return
    for result in results:
        if isinstance(result, WorkloadView):
            say(
                f"{result.kind} {result.id} ({result.name}) submitted to "
                f"queue {result.queue}: {result.phase}"
            )
        else:
            say(f"{type(result).__name__.removesuffix('View')} {result.name} applied")


def jobs(
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    phase: Annotated[str | None, typer.Option(help="Phases, comma-separated.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    json_output: JsonOption = False,
) -> None:
    """List training jobs, newest first."""
    views = _ask(lambda c: c.jobs(queue=queue, phase=phase, limit=limit), json_output)
    if json_output:
        print_json([v.model_dump() for v in views])
    else:
        _workload_table("Jobs", views)


def services(
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List inference services and their endpoints."""
    views = _ask(lambda c: [c.job(v.id) for v in c.services(queue=queue)], json_output)
    if json_output:
        print_json([v.model_dump() for v in views])
        return
    print_table(
        "Services",
        ["ID", "NAME", "QUEUE", "PHASE", "SIZE", "ENDPOINTS", "REASON"],
        (
            (
                v.id,
                v.name,
                v.queue,
                v.phase,
                _cards(v),
                "\n".join(
                    f"127.0.0.1:{r.port}"
                    for r in v.running_replicas
                    if r.port and r.state == "running"
                ),
                v.reason,
            )
            for v in views
        ),
    )


def job(
    workload_id: Annotated[str, typer.Argument(help="A job or service id.")],
    json_output: JsonOption = False,
) -> None:
    """One job or service: its state, why, its replicas and its events."""
    view, events = _ask(lambda c: (c.job(workload_id), c.events(workload_id)), json_output)
    if json_output:
        print_json({**view.model_dump(), "events": [e.model_dump() for e in events]})
        return
    say(f"{view.id} {view.kind} {view.name} in queue {view.queue}")
    say(f"phase: {view.phase} ({view.reason_code}) {view.reason}")
    if view.exit_code is not None:
        say(f"exit code: {view.exit_code}")
    say(f"restarts: {view.restarts}")
    if view.runtime is not None:
        say(_runtime_line(view))
    if view.split is not None:
        say(_split_line(view.split))
    if view.running_replicas:
        print_table(
            "Replicas",
            ["#", "NODE", "DEVICES", "STATE", "EXIT", "PORT"],
            (
                (
                    r.index,
                    r.node,
                    ",".join(map(str, r.devices)) + ("" if r.share == 1 else f" ×{r.share:g}"),
                    r.state,
                    "" if r.exit_code is None else r.exit_code,
                    r.port or "",
                )
                for r in view.running_replicas
            ),
        )
    print_table(
        "Events",
        ["TIME", "TYPE", "MESSAGE"],
        (
            (datetime.fromtimestamp(e.ts, UTC).strftime("%H:%M:%S"), e.type, e.message)
            for e in events
        ),
    )


def logs(
    workload_id: Annotated[str, typer.Argument(help="A job or service id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until it ends.")] = False,
    replica: Annotated[int | None, typer.Option(help="Only this replica.")] = None,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines.")] = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help='One JSON object per line: {"replica": "r0" or null, "line": TEXT} '
            "(replica is null when the workload has one replica).",
        ),
    ] = False,
) -> None:
    """Print a job's or service's output (all replicas, labelled [REPLICA-ID])."""
    lines = _LogLines()
    try:
        with _client() as client:
            for chunk in client.logs(workload_id, follow=follow, replica=replica, tail=tail):
                if json_output:
                    for record in lines.feed(chunk):
                        print_json_line(record)
                else:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.buffer.flush()
            if json_output:
                for record in lines.flush():
                    print_json_line(record)
    except BaigeError as err:
        _fail(err, json_output)
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None


class _LogLines:
    """Splits the log stream into ``{"replica", "line"}`` records for ``logs --json``.

    The server labels each line ``[rN] `` (N: the replica's index) when the workload has
    several replicas; with one, ``replica`` is null."""

    LABEL = re.compile(r"\[(r\d+)\] (.*)", re.DOTALL)

    def __init__(self) -> None:
        self.partial = b""

    def _record(self, raw: bytes) -> dict[str, str | None]:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        if match := self.LABEL.fullmatch(text):
            return {"replica": match[1], "line": match[2]}
        return {"replica": None, "line": text}

    def feed(self, chunk: bytes) -> list[dict[str, str | None]]:
        *complete, self.partial = (self.partial + chunk).split(b"\n")
        return [self._record(raw) for raw in complete]

    def flush(self) -> list[dict[str, str | None]]:
        rest, self.partial = self.partial, b""
        return [self._record(rest)] if rest else []


def _running(view: WorkloadView) -> int:
    return sum(r.state == "running" for r in view.running_replicas)


def cancel(
    workload_id: Annotated[str, typer.Argument(help="A job or service id.")],
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds to wait until it has stopped (0: return once the cancel is recorded).",
        ),
    ] = 30.0,
    json_output: JsonOption = False,
) -> None:
    """Stop a job or service; waits (up to --wait seconds) until its replicas have stopped."""
    view = _ask(lambda c: c.cancel(workload_id), json_output)
    if wait > 0 and not _terminal(view.phase):
        deadline = time.monotonic() + wait
        with _client() as client:
            while not _terminal(view.phase) and time.monotonic() < deadline:
                time.sleep(0.25)
                try:
                    view = client.job(workload_id)
                except BaigeError as err:
                    _fail(err, json_output)
    if json_output:
        print_json(view.model_dump())
    elif _terminal(view.phase):
        why = f" ({view.reason})" if view.reason and view.reason != view.phase else ""
        say(f"{view.id}: {view.phase}{why}")
    else:
        say(
            f"{view.id}: cancel requested; still {view.phase} while "
            f"{_running(view)} replica(s) stop (`baige job {view.id}` to follow)"
        )


def _terminal(phase: str) -> bool:
    from baige.api.workloads import Phase  # noqa: PLC0415

    return Phase(phase).terminal


def scale(
    workload_id: Annotated[str, typer.Argument(help="A service id.")],
    replicas: Annotated[int, typer.Argument(min=0, help="Replicas wanted.")],
    json_output: JsonOption = False,
) -> None:
    """Change how many replicas a service runs (the controller starts or stops them)."""
    view = _ask(lambda c: c.scale(workload_id, replicas), json_output)
    if json_output:
        print_json(view.model_dump())
        return
    say(
        f"{view.id}: scaled to {view.replicas} replica(s); {_running(view)} running now "
        f"({view.phase}; the controller starts or stops the rest within seconds)"
    )


def queues(json_output: JsonOption = False) -> None:
    """The queue tree: guaranteed, limit and used cards per accelerator type."""
    views = _ask(lambda c: c.queues(), json_output)
    if json_output:
        print_json([v.model_dump() for v in views])
        return
    rows = []
    for v in views:
        usage = "; ".join(
            f"{accel}: {u.used:g}/{u.guaranteed:g}"
            + (f" (≤{u.limit:g})" if u.limit is not None else "")
            for accel, u in v.usage.items()
        )
        rows.append(
            (
                v.name,
                v.parent or "",
                v.tenant or "",
                f"{v.weight:g}",
                usage or "-",
                v.running,
                v.pending,
            )
        )
    print_table(
        "Queues",
        ["NAME", "PARENT", "TENANT", "WEIGHT", "USED/GUARANTEED", "RUNNING", "PENDING"],
        rows,
    )


def nodes(json_output: JsonOption = False) -> None:
    """Nodes, their health and what is allocated on them."""
    views = _ask(lambda c: c.nodes(), json_output)
    if json_output:
        print_json([v.model_dump() for v in views])
        return
    print_table(
        "Nodes",
        ["NAME", "ACCELERATORS", "ALLOCATED", "HEALTH", "HEARTBEAT", "REASON"],
        (
            (
                v.name,
                f"{v.devices}× {v.accelerator_type}",
                f"{v.allocated:g}",
                v.health,
                _age(v.last_heartbeat),
                v.reason,
            )
            for v in views
        ),
        keep_whole={"NAME"},
    )


def cordon(
    name: Annotated[str, typer.Argument(help="A node name.")], json_output: JsonOption = False
) -> None:
    """Place no new work on a node (what runs there keeps running)."""
    _set_cordon(name, True, json_output)


def uncordon(
    name: Annotated[str, typer.Argument(help="A node name.")], json_output: JsonOption = False
) -> None:
    """Let the scheduler use a cordoned node again."""
    _set_cordon(name, False, json_output)


def drain(
    name: Annotated[str, typer.Argument(help="A node name.")], json_output: JsonOption = False
) -> None:
    """Cordon a node and move its work elsewhere (training restarts from its checkpoint)."""
    view = _ask(lambda c: c.drain(name), json_output)
    if json_output:
        print_json(view.model_dump())
        return
    say(f"node {view.name}: draining; its work is rescheduled (uncordon to undo)")


def _set_cordon(name: str, value: bool, json_output: bool) -> None:
    view = _ask(lambda c: c.cordon(name, value), json_output)
    if json_output:
        print_json(view.model_dump())
        return
    say(f"node {view.name}: {view.health}")


def token(
    name: Annotated[str, typer.Argument(help="Who the token is for.")],
    tenant: Annotated[str | None, typer.Option(help="The tenant it acts for.")] = None,
    admin: Annotated[bool, typer.Option(help="An admin token (sees everything).")] = False,
    metrics: Annotated[
        bool, typer.Option(help="A token that reads /metrics and nothing else (Prometheus).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Make an API token (admin only); it is printed once."""
    view = _ask(lambda c: c.create_token(name, tenant, admin, metrics=metrics), json_output)
    if json_output:
        print_json(view.model_dump())
        return
    say(view.token)


def _connect_host(host: str) -> str:
    """The address replicas use to reach an API listening on ``host``."""
    if host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


def up(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    db: Annotated[
        str | None,
        typer.Option(help="sqlite:///PATH (default ~/.baige/baige.db) or postgresql+psycopg://…"),
    ] = None,
    fake_accelerators: Annotated[
        str | None,
        typer.Option(
            help="Declare fake accelerators per node, e.g. h100:8; several types make a mixed "
            "cluster, e.g. h100:8,ascend-910b:8 (--fake-nodes of each)."
        ),
    ] = None,
    fake_nodes: Annotated[
        int, typer.Option(min=1, max=1000, help="How many fake nodes (of each type).")
    ] = 1,
    profile: Annotated[str, typer.Option(help="Scheduling profile (baige or fifo).")] = "baige",
    backend: Annotated[
        str,
        typer.Option(
            help="local (real processes), slurm (jobs on the Slurm cluster SLURM_CONF names) "
            "or fake (runs nothing; for benchmarks)."
        ),
    ] = "local",
    heartbeat_timeout: Annotated[
        float, typer.Option(min=1.0, help="Seconds of silence before a node is failed.")
    ] = 10.0,
    lease: Annotated[
        float,
        typer.Option(
            min=1.0,
            max=600.0,
            help="PostgreSQL: seconds a leader that stopped answering keeps the controller "
            "before a standby `baige up` takes over (a deposed one stands by again).",
        ),
    ] = 8.0,
    home: Annotated[Path | None, typer.Option(help="Data directory (default ~/.baige).")] = None,
    tenant_user: Annotated[
        list[str] | None,
        typer.Option(
            help="TENANT=USER: run that tenant's replicas as USER ('*=USER' for every tenant; "
            "repeatable). Default as root: tenant T runs as baige-T (admin: baige-admin)."
        ),
    ] = None,
    allow_workdir: Annotated[
        list[Path] | None,
        typer.Option(help="A directory working_dir must lie under (repeatable; default: any)."),
    ] = None,
    health_policy: Annotated[
        Path | None,
        typer.Option(
            help="YAML: what device conditions do to a node (see README, Device "
            "health). Default: fatal drains, degraded cordons, healed after 5 min."
        ),
    ] = None,
    preflight_nodes: Annotated[
        int,
        typer.Option(
            min=0,
            max=100000,
            help="Pre-flight a training gang placed on at least this many nodes before it "
            "starts (all-reduce and compute check; a slow node is left out). 0: never.",
        ),
    ] = 8,
    preflight_mb: Annotated[
        float, typer.Option(min=0.001, max=4096, help="The pre-flight's all-reduce size, MB.")
    ] = 256.0,
    api_workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="PostgreSQL: API server processes (the controller runs in its own). SQLite "
            "runs everything in one process.",
        ),
    ] = 2,
) -> None:
    """Run the control plane: the API, the controller and this machine's node agent."""
    import logging  # noqa: PLC0415 - the server's imports stay out of the other commands

    import uvicorn  # noqa: PLC0415

    from baige.control.platform import (  # noqa: PLC0415
        AlreadyRunning,
        Platform,
        PlatformOptions,
        already_running,
    )
    from baige.hw.discovery import discover, parse_fake, parse_fake_groups  # noqa: PLC0415
    from baige.sched import ProfileError, get_profile  # noqa: PLC0415
    from baige.server.app import server_config  # noqa: PLC0415
    from baige.store.db import DatabaseError, default_db_url, home_dir  # noqa: PLC0415

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    data = (home or home_dir()).expanduser()
    if backend not in ("local", "slurm", "fake"):
        raise _fail(ValueError(f"--backend {backend!r}: choose local, slurm or fake"))
    try:
        chosen = get_profile(profile)
        groups = parse_fake_groups(fake_accelerators) if fake_accelerators else ()
        accelerators = groups[0] if groups else discover()
    except (ValueError, ProfileError) as err:
        raise _fail(err) from None
    if accelerators is None and backend == "slurm":
        accelerators = parse_fake("h100:8")  # unused: Slurm's nodes are the cluster
    elif accelerators is None:
        accelerators = parse_fake("h100:8")
        err_console.print(
            "no accelerators found: declaring 8 fake h100 per node "
            "(choose with --fake-accelerators TYPE:COUNT)"
        )
    from baige.backends.identity import parse_tenant_users  # noqa: PLC0415

    try:
        users = parse_tenant_users(tenant_user or [])
    except ValueError as err:
        raise _fail(err) from None
    if users and os.geteuid() != 0:
        raise _fail(ValueError("--tenant-user needs `baige up` to run as root"))
    from baige.control.health_policy import load_policy  # noqa: PLC0415
    from baige.control.preflight_gate import PreflightSettings  # noqa: PLC0415

    try:
        policy = load_policy(health_policy) if health_policy is not None else None
        if preflight_nodes == 1:
            raise ValueError("--preflight-nodes 1: give 0 (off) or at least 2 (a node alone "
                             "has no peers to be compared with)")  # fmt: skip
        preflight = PreflightSettings(min_nodes=preflight_nodes, mb=preflight_mb)
    except ValueError as err:
        raise _fail(err) from None
    options = PlatformOptions(
        preflight=preflight,
        health_policy=policy,
        accelerator_groups=groups if len(groups) > 1 else (),
        tenant_users=users if os.geteuid() == 0 and backend != "fake" else None,
        allowed_workdirs=tuple(p.expanduser().resolve() for p in allow_workdir or []),
        db_url=db or default_db_url(data),
        home=data,
        accelerators=accelerators,
        nodes=fake_nodes if accelerators.fake else 1,
        profile=chosen,
        backend=backend,
        heartbeat_timeout=heartbeat_timeout,
        lease_s=lease,
        api_url=f"http://{_connect_host(host)}:{port}",
    )
    if options.db_url.startswith("postgresql"):
        _up_supervised(options, host, port, api_workers)
        return
    try:
        platform = Platform(options)
    except DatabaseError as err:
        raise _fail(err) from None
    try:
        with already_running(platform.db, data):
            platform.start()
            _banner(platform, host, port)
            server = uvicorn.Server(server_config(platform.app(), host=host, port=port))
            signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
            server.run()
    except AlreadyRunning as err:
        raise _fail(err) from None
    finally:
        platform.stop()


def _banner(platform: Platform, host: str, port: int) -> None:
    """What `baige up` prints once it is up: where, which database and nodes, the token."""
    from baige.control.platform import SYSTEM  # noqa: PLC0415
    from baige.store.db import home_dir  # noqa: PLC0415

    options, data = platform.options, platform.options.home
    url = f"http://{host}:{port}"
    console.print(f"[bold]Baige[/bold] is up at {url} (API docs at {url}/docs)", highlight=False)
    fake = " fake" if options.groups and options.groups[0].fake else ""
    nodes = (
        f"{len(platform.service.list_nodes(SYSTEM))} from Slurm"
        if options.backend == "slurm"
        else f"{', '.join(platform.node_names)} ("
        + "; ".join(f"{g.count}× {g.type}{fake}" for g in options.groups)
        + " each)"
    )
    say(f"database: {platform.db.safe_url}; nodes: {nodes}")
    if platform.db.dialect == "postgresql":
        say(
            "controller: led by one `baige up` of those sharing this database; the others "
            f"stand by and take over within {options.lease_s:g} s (see the log)"
        )
    token_file = data / "admin-token"
    if platform.admin_token:
        say(f"admin token (shown once, saved to {token_file}):\n  {platform.admin_token}")
    else:
        say(f"admin token: in {token_file}")
    if url != DEFAULT_URL or data != home_dir().expanduser():
        say(
            "point the CLI here with: export "
            + (f"BAIGE_URL={url} " if url != DEFAULT_URL else "")
            + f"BAIGE_TOKEN=$(cat {shlex.quote(str(token_file))})"
        )
    console.print("try: baige submit examples/train-cpu.yaml && baige jobs", highlight=False)


def _up_supervised(options: PlatformOptions, host: str, port: int, api_workers: int) -> None:
    """PostgreSQL: prepare the store once, open the port, then supervise a controller process
    and ``api_workers`` API processes (``baige.control.processes``) until SIGTERM/SIGINT."""
    from baige.control.platform import Platform, instance_name  # noqa: PLC0415
    from baige.control.processes import Child, Launch, Supervisor  # noqa: PLC0415
    from baige.store.db import DatabaseError  # noqa: PLC0415

    instance = instance_name()
    try:
        setup = Platform(options, part="api", instance=instance)
    except DatabaseError as err:
        raise _fail(err) from None
    try:
        setup.prepare()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            listening = socket.create_server((host, port), family=family, backlog=2048)
        except OSError as err:
            raise _fail(ValueError(f"--host {host} --port {port}: {err.strerror or err}")) from None
        _banner(setup, host, port)
    finally:
        setup.stop()
    listening.set_inheritable(True)
    children = [Child("controller", Launch(options, instance, "controller"))] + [
        Child(f"api-{i}", Launch(options, instance, "api", fd=listening.fileno()))
        for i in range(api_workers)
    ]
    say(f"processes: a controller and {api_workers} API worker(s), supervised (see the log)")
    supervisor = Supervisor(children)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: supervisor.stop())
    try:
        supervisor.run()
    finally:
        listening.close()
