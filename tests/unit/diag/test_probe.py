"""Real probes on this machine's loopback (threads in this process, real sockets): what the
coordinator measures, how it reports a probe it cannot reach, and the command line."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from typer.testing import CliRunner

from baige.cli.main import app
from baige.diag.links import diagnose_links
from baige.diag.probe import ProbeError, _figures, call, parse_address, running

runner = CliRunner()


@pytest.fixture
def probes() -> Iterator[list[str]]:
    with ExitStack() as stack:
        servers = [stack.enter_context(running(("127.0.0.1", 0), f"p{i}")) for i in range(3)]
        yield [s.address for s in servers]


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_every_pair_and_the_ring_are_measured(probes: list[str]) -> None:
    report = diagnose_links(probes, seconds=0.05, pings=5, confirm=0)
    assert [(p.a, p.b) for p in report.pairs] == [("p0", "p1"), ("p0", "p2"), ("p1", "p2")]
    for pair in report.pairs:
        assert pair.error is None
        assert pair.bw_ab and pair.bw_ab > 1e6 and pair.bw_ba and pair.bw_ba > 1e6
        assert pair.rtt_s is not None and 0 < pair.rtt_s < 0.5
    assert [(e.src, e.dst) for e in report.ring] == [("p0", "p1"), ("p1", "p2"), ("p2", "p0")]
    document = report.to_json()
    assert json.loads(json.dumps(document))["nodes"][0] == {"name": "p0", "address": probes[0]}


def test_a_probe_that_is_not_there_is_named(probes: list[str]) -> None:
    missing = _closed_port()
    with pytest.raises(ProbeError, match=f"cannot reach the probe at {missing}"):
        diagnose_links([*probes, missing], seconds=0.05)


def test_the_probe_refuses_what_it_does_not_know(probes: list[str]) -> None:
    with pytest.raises(ProbeError, match="unknown op 'format-disk'"):
        call(probes[0], {"op": "format-disk"})
    with pytest.raises(ProbeError, match="seconds must be in"):
        call(probes[0], {"op": "send", "to": probes[1], "seconds": 3600})


def test_the_sink_rate_ignores_a_pause_of_the_sender() -> None:
    steady = [(i * 0.01, 1000) for i in range(101)]  # 100 kB/s for a second
    paused = [(t + (0.1 if t > 0.5 else 0.0), n) for t, n in steady]  # a 100 ms stall
    assert _figures(steady)["rate"] == pytest.approx(1e5, rel=0.05)
    assert _figures(paused)["rate"] == pytest.approx(1e5, rel=0.1)
    assert _figures(paused)["bytes"] / _figures(paused)["seconds"] < 0.93e5


@pytest.mark.parametrize(
    ("text", "message"),
    [("node1", "expected HOST:PORT"), ("node1:x", "is not a number"),
     ("node1:70000", "out of range"), (":80", "the host is empty")],
)  # fmt: skip
def test_addresses_are_checked(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_address(text)


def test_the_command_reports_pairs_as_json(probes: list[str]) -> None:
    result = runner.invoke(
        app, ["diagnose", "--json", "--seconds", "0.05", "--pings", "3", "--no-ring", *probes]
    )
    assert result.exit_code in (0, 3), result.output  # loopback speed is the CPU's: no verdict
    document = json.loads(result.output)
    assert len(document["pairs"]) == 3 and document["ring"] == []
    assert document["healthy"] is (result.exit_code == 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["only-one:1"], "at least two nodes"), (["a:1", "a:1"], "a node is given twice"),
     (["a"], "expected HOST:PORT")],
)  # fmt: skip
def test_command_errors_are_one_json_document(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["diagnose", "--json", *args])
    assert result.exit_code == 2
    document = json.loads(result.output)
    assert message in document["error"] and document["status"] is None


def test_an_unreachable_node_is_an_error_not_a_traceback(probes: list[str]) -> None:
    missing = _closed_port()
    result = runner.invoke(app, ["diagnose", probes[0], missing])
    assert result.exit_code == 1
    assert f"cannot reach the probe at {missing}" in result.output
    assert "Traceback" not in result.output
