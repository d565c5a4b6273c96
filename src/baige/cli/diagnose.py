"""``baige diagnose``: find the slow node or link among nodes.

Each node runs a probe (``baige diagnose --serve HOST:PORT``, standard library only); the
command, run anywhere that reaches them, measures round trips and bandwidth for every pair
and around the ring, and names the node or link far below its peers. Exit code 0 when
nothing is slow, 3 when a suspect is named, 1 on an error. Details: ``docs/diagnose.md``.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Annotated

import typer

from baige.cli.output import fail, print_json, print_table, say

if TYPE_CHECKING:
    from baige.diag.locate import Thresholds

__all__ = ["EXIT_SUSPECT", "diagnose"]

EXIT_SUSPECT = 3


def _gbit(value: float | None) -> str:
    return "failed" if value is None else f"{value * 8 / 1e9:.3f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.3f}"


def diagnose(
    nodes: Annotated[
        list[str] | None,
        typer.Argument(help="Probes to test, HOST:PORT each (started with --serve)."),
    ] = None,
    serve: Annotated[
        str | None,
        typer.Option(help="Run this node's probe on HOST:PORT instead (until interrupted)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="With --serve: the name reported (default: hostname).")
    ] = None,
    seconds: Annotated[
        float, typer.Option(min=0.05, max=30, help="Seconds of streaming per bandwidth test.")
    ] = 0.5,
    pings: Annotated[int, typer.Option(min=1, max=1000, help="Round trips per pair.")] = 20,
    slowdown: Annotated[
        float,
        typer.Option(min=1.01, help="Name a node or link this many times below its peers."),
    ] = 1.5,
    ring: Annotated[bool, typer.Option(help="Also run the ring test (all nodes at once).")] = True,
    preflight: Annotated[
        bool,
        typer.Option(help="Pre-flight instead: a gloo all-reduce and a compute check per node."),
    ] = False,
    mb: Annotated[
        float, typer.Option(min=0.001, max=4096, help="With --preflight: all-reduce size, MB.")
    ] = 256.0,
    compute_seconds: Annotated[
        float,
        typer.Option(min=0.05, max=30, help="With --preflight: CPU seconds of compute check."),
    ] = 1.0,
    slow_compute: Annotated[
        float,
        typer.Option(
            min=1, help="With --serve: rehearse a slow node (its compute check runs F× slower)."
        ),
    ] = 1.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Locate a slow node or link: ring and pairwise bandwidth and latency tests."""
    from baige.diag.locate import Thresholds  # noqa: PLC0415 - keeps `baige --help` fast
    from baige.diag.probe import ProbeError, ProbeServer, parse_address  # noqa: PLC0415

    if serve is not None:
        if nodes:
            fail("--serve runs a probe; give no nodes with it", json_output, code=2)
        try:
            server = ProbeServer(parse_address(serve), name or socket.gethostname(), slow_compute)
        except (ValueError, OSError) as err:
            fail(f"--serve {serve}: {err}", json_output)
        if json_output:
            print_json({"serving": server.address, "name": server.settings.name})
        else:
            say(f"probe {server.settings.name} listening on {server.address}")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return
    from baige.diag.links import diagnose_links  # noqa: PLC0415

    addresses = list(nodes or [])
    if preflight:
        _preflight(addresses, mb, compute_seconds, Thresholds(slowdown=slowdown), json_output)
        return
    try:
        for address in addresses:
            parse_address(address)
        report = diagnose_links(
            addresses,
            seconds=seconds,
            pings=pings,
            ring=ring,
            thresholds=Thresholds(slowdown=slowdown),
        )
    except (ValueError, ProbeError) as err:
        fail(str(err), json_output, code=2 if isinstance(err, ValueError) else 1)
    if json_output:
        print_json(report.to_json())
    else:
        suspects = {s.nodes for s in report.suspects}
        print_table(
            "Links (Gbit/s each way, round trip in ms)",
            ["link", "a→b", "b→a", "rtt", "verdict"],
            [
                (
                    f"{p.a}<->{p.b}",
                    _gbit(p.bw_ab),
                    _gbit(p.bw_ba),
                    _ms(p.rtt_s),
                    "SLOW" if (p.key in suspects or {(p.a,), (p.b,)} & suspects) else "ok",
                )
                for p in report.pairs
            ],
            keep_whole={"link"},
        )
        if report.ring:
            print_table(
                "Ring (all nodes at once)",
                ["edge", "Gbit/s"],
                [(f"{e.src}→{e.dst}", _gbit(e.bandwidth)) for e in report.ring],
                keep_whole={"edge"},
            )
            say(f"ring: {_gbit(report.ring_bandwidth)} Gbit/s (its slowest edge)")
        for suspect in report.suspects:
            say(f"suspect {suspect.kind} {suspect.name}: {suspect.evidence}", style="red")
        for note in report.notes:
            say(f"note: {note}")
        if report.healthy:
            say(f"{report.summary()} ({report.seconds:.1f} s)")
    if not report.healthy:
        raise typer.Exit(code=EXIT_SUSPECT)


def _preflight(
    addresses: list[str], mb: float, compute_s: float, thresholds: Thresholds, json_output: bool
) -> None:
    from baige.diag.preflight import preflight  # noqa: PLC0415
    from baige.diag.probe import ProbeError, parse_address  # noqa: PLC0415

    try:
        for address in addresses:
            parse_address(address)
        report = preflight(addresses, mb=mb, compute_s=compute_s, thresholds=thresholds)
    except ImportError as err:
        fail(f"the pre-flight needs torch (pip install 'baige[train]'): {err}", json_output)
    except (ValueError, ProbeError) as err:
        fail(str(err), json_output, code=2 if isinstance(err, ValueError) else 1)
    if json_output:
        print_json(report.to_json())
    else:
        named = {s.nodes[0] for s in report.suspects}
        print_table(
            f"Pre-flight: all-reduce of {mb:g} MB over gloo",
            ["node", "GFLOP/s", "all-reduce s", "bus Gbit/s", "verdict"],
            [
                (
                    n.name,
                    "-" if n.flops is None else f"{n.flops / 1e9:.2f}",
                    "-" if n.allreduce_s is None else f"{n.allreduce_s:.3f}",
                    _gbit(n.bus_bandwidth),
                    "LEAVE OUT" if n.name in named else "ok",
                )
                for n in report.nodes
            ],
            keep_whole={"node"},
        )
        for suspect in report.suspects:
            say(f"suspect node {suspect.name}: {suspect.evidence}", style="red")
        for note in report.notes:
            say(f"note: {note}")
        say(report.summary())
    if not report.healthy:
        raise typer.Exit(code=EXIT_SUSPECT)
