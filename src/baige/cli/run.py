"""``baige run``: start a training command under Baige's fault-tolerant launcher.

The options mirror torchrun's where they mean the same thing (``--nproc-per-node``,
``--nnodes``, ``--max-restarts``, ``--rdzv-*``), so a torchrun command line becomes a Baige
one by changing its first word; the rest are the watching: timeouts, straggler reporting.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["CONTEXT_SETTINGS", "run"]

# Everything after the first word of the command belongs to the command, `--` or not.
CONTEXT_SETTINGS: dict[str, Any] = {"allow_interspersed_args": False}


def run(
    command: Annotated[
        list[str],
        typer.Argument(help="The training command, e.g. -- python train.py --steps 1000."),
    ],
    nproc_per_node: Annotated[
        int, typer.Option("--nproc-per-node", help="Worker processes on this node.")
    ] = 1,
    nnodes: Annotated[
        str, typer.Option("--nnodes", help="Nodes in the job: N, or MIN:MAX for elastic.")
    ] = "1",
    node_rank: Annotated[
        int | None, typer.Option("--node-rank", help="This node's rank (static rendezvous).")
    ] = None,
    max_restarts: Annotated[
        int, typer.Option("--max-restarts", help="Worker-group restarts before giving up.")
    ] = 3,
    rdzv_backend: Annotated[
        str, typer.Option("--rdzv-backend", help="c10d (default) or static.")
    ] = "",
    rdzv_endpoint: Annotated[
        str, typer.Option("--rdzv-endpoint", help="HOST:PORT, the same on every node.")
    ] = "",
    run_id: Annotated[
        str, typer.Option("--run-id", help="Names the run (default: time and a random tag).")
    ] = "",
    run_dir: Annotated[
        Path | None,
        typer.Option("--run-dir", help="Event log, logs, stacks (default ~/.baige/runs/ID)."),
    ] = None,
    hang_timeout: Annotated[
        float,
        typer.Option(
            "--hang-timeout",
            help="Seconds without a step before a hang (at least 3x the median step; 0: off).",
        ),
    ] = 20.0,
    startup_timeout: Annotated[
        float,
        typer.Option(
            "--startup-timeout",
            help="Seconds from start to a rank's first step (0: no progress checks at all).",
        ),
    ] = 300.0,
    straggler_factor: Annotated[
        float,
        typer.Option("--straggler-factor", help="Compute per step vs. the others' median."),
    ] = 1.5,
    straggler_window: Annotated[
        float, typer.Option("--straggler-window", help="Seconds per straggler comparison.")
    ] = 5.0,
    straggler_report_after: Annotated[
        int,
        typer.Option(
            "--straggler-report-after",
            help="Flagged windows in a row before the node is reported for cordoning.",
        ),
    ] = 3,
    max_node_failures: Annotated[
        int | None,
        typer.Option(
            "--max-node-failures",
            help="Faults on this node before it leaves the job (default 3 with several "
            "nodes, off with one; 0: off).",
        ),
    ] = None,
    node_timeout: Annotated[
        float,
        typer.Option(
            "--node-timeout",
            help="Seconds before a silent node leaves the rendezvous (>= 3; torch: 15).",
        ),
    ] = 15.0,
    monitor_interval: Annotated[
        float, typer.Option("--monitor-interval", help="Seconds between looks at the workers.")
    ] = 0.25,
    stop_timeout: Annotated[
        int, typer.Option("--stop-timeout", help="Seconds a stopping worker gets before SIGKILL.")
    ] = 5,
    progress_every: Annotated[
        float, typer.Option("--progress-every", help="Seconds between progress events (0: off).")
    ] = 30.0,
    fault: Annotated[
        str | None,
        typer.Option(
            "--fault",
            help="Inject faults (overrides BAIGE_FAULT), e.g. kill:rank=1:step=50.",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="Workers' output to the log files only.")
    ] = False,
    cold: Annotated[
        bool,
        typer.Option(
            "--cold",
            help="Start every attempt's workers as new processes (default for `python "
            "script.py`: forked from a process with torch already imported).",
        ),
    ] = False,
    peer_secret_file: Annotated[
        str,
        typer.Option(
            "--peer-secret-file",
            help="The job's secret: turns on peer-memory checkpoints (see --peer-bind).",
        ),
    ] = "",
    peer_bind: Annotated[
        str,
        typer.Option("--peer-bind", help="HOST:PORT where this node holds a buddy's checkpoints."),
    ] = "",
    peer_buddy: Annotated[
        str,
        typer.Option(
            "--peer-buddy",
            help="HOST:PORT this node's ranks push snapshots to; more, comma-separated, "
            "take the pushes while the first cannot be reached.",
        ),
    ] = "",
    peer_fetch_from: Annotated[
        str,
        typer.Option(
            "--peer-fetch-from",
            help="HOST:PORT,… a restarted rank restores from (default: the buddy).",
        ),
    ] = "",
    peer_max_bytes: Annotated[
        str, typer.Option("--peer-max-bytes", help="Memory for buddies' snapshots, e.g. 64G.")
    ] = "16G",
) -> None:
    """Run a training command fault-tolerantly: restart on crashes and hangs, flag slow ranks.

    The script reports progress with `progress = baige.runtime.attach()` and
    `progress.step(step)`, and restores from baige.ckpt on restart.
    """
    from baige.runtime.launch import RunConfig, UsageError  # noqa: PLC0415
    from baige.runtime.launch import run as launch  # noqa: PLC0415
    from baige.runtime.watch import WatchConfig  # noqa: PLC0415

    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("baige.runtime").setLevel(logging.INFO)
    try:
        watch = WatchConfig(
            hang_timeout_s=hang_timeout,
            startup_timeout_s=startup_timeout,
            straggler_factor=straggler_factor,
            straggler_window_s=straggler_window,
            straggler_report_after=straggler_report_after,
        )
        config = RunConfig(
            command=tuple(command),
            nproc_per_node=nproc_per_node,
            nnodes=nnodes,
            node_rank=node_rank,
            max_restarts=max_restarts,
            rdzv_backend=rdzv_backend,
            rdzv_endpoint=rdzv_endpoint,
            run_id=run_id,
            run_dir=run_dir,
            monitor_interval_s=monitor_interval,
            stop_timeout_s=stop_timeout,
            watch=watch,
            max_node_failures=max_node_failures,
            progress_every_s=progress_every,
            fault=fault,
            tee=not quiet,
            peer=None,
            node_timeout_s=node_timeout,
            cold=cold,
        )
        if peer_secret_file or peer_bind or peer_buddy or peer_fetch_from:
            from dataclasses import replace  # noqa: PLC0415

            from baige.runtime.peer import PeerRun  # noqa: PLC0415

            if not peer_secret_file:
                raise UsageError("--peer-bind/--peer-buddy need --peer-secret-file")
            fetch = tuple(a.strip() for a in peer_fetch_from.split(",") if a.strip())
            peer = PeerRun(
                secret_file=peer_secret_file,
                bind=peer_bind,
                buddy=peer_buddy,
                fetch_from=fetch,
                max_bytes=peer_max_bytes,
            )
            config = replace(config, peer=peer)
        outcome = launch(config)
    except (UsageError, ValueError) as err:
        typer.echo(f"baige run: error: {err}", err=True)
        raise typer.Exit(code=2) from None
    status = "done" if outcome.exit_code == 0 else "failed"
    typer.echo(f"baige run: {status}: {outcome.message}", err=True)
    typer.echo(f"baige run: events: {outcome.events}", err=True)
    raise typer.Exit(code=outcome.exit_code)
