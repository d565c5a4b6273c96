"""``baige fault``: raise and clear device conditions on fake cards (the declared fake
health source of ``baige up --fake-accelerators``), or slow them down, to rehearse what the
health policy and the pre-flight do.

The node agent of a ``baige up`` reads ``HOME/health/NODE.json`` every beat; these commands
write it, so they act on the local control plane's fake nodes (``--home`` as given to
``baige up``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from baige.cli.output import fail, print_json, say

app = typer.Typer(
    name="fault",
    help="Raise or clear device conditions on a local baige up's fake cards.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
HomeOption = Annotated[
    Path | None, typer.Option(help="The data directory of `baige up` (default ~/.baige).")
]


def _file(home: Path | None, node: str) -> Path:
    from baige.store.db import home_dir  # noqa: PLC0415

    if not node or "/" in node or node.startswith("."):
        raise ValueError(f"node {node!r}: not a node name")
    return (home or home_dir()).expanduser() / "health" / f"{node}.json"


@app.command()
def inject(
    node: Annotated[str, typer.Argument(help="A fake node of the local baige up.")],
    card: Annotated[int, typer.Option(min=-1, max=1023, help="Card index (-1: the node).")] = 0,
    xid: Annotated[int | None, typer.Option(min=0, help="Raise this NVIDIA XID.")] = None,
    condition: Annotated[
        str | None,
        typer.Option(help="Raise a condition by kind, e.g. ecc-uncorrectable, thermal-throttle."),
    ] = None,
    reason: Annotated[str, typer.Option(help="Evidence to record with it.")] = "",
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Raise a condition on a fake card; the health policy acts on it within a beat."""
    from baige.hw.health import (  # noqa: PLC0415
        DEFAULT_SEVERITY,
        Condition,
        FakeHealth,
        Kind,
        xid_condition,
    )

    try:
        if (xid is None) == (condition is None):
            raise ValueError("give --xid CODE or --condition KIND (one of them)")
        if xid is not None:
            raised = xid_condition(card, xid)
        else:
            kinds = [k.value for k in Kind if k is not Kind.XID]
            if condition not in kinds:
                raise ValueError(f"--condition {condition!r}: choose one of {', '.join(kinds)}")
            kind = Kind(condition)
            raised = Condition(kind, DEFAULT_SEVERITY[kind], card, reason or f"{kind.value}")
        if reason and xid is not None:
            raised = Condition(raised.kind, raised.severity, card, f"{raised.reason}: {reason}",
                               raised.code)  # fmt: skip
        path = _file(home, node)
        FakeHealth(path).inject(raised)
    except (ValueError, OSError) as err:
        fail(str(err), json_output)
    if json_output:
        print_json({"node": node, "file": str(path), "condition": raised.to_json()})
        return
    say(f"{node} card {card}: {raised.reason} ({raised.severity.value}); written to {path}")


@app.command()
def slow(
    node: Annotated[str, typer.Argument(help="A fake node of the local baige up.")],
    factor: Annotated[
        float, typer.Option(min=1.0, max=1000.0, help="Times slower than its peers (1: heal).")
    ] = 3.0,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Make a fake node's cards slower without any condition: its own checks pass, but the
    pre-flight before a big gang (``baige up --preflight-nodes``) finds it and leaves it out."""
    from baige.hw.health import FakeHealth  # noqa: PLC0415

    try:
        path = _file(home, node)
        FakeHealth(path).slow(factor)
    except (ValueError, OSError) as err:
        fail(str(err), json_output)
    if json_output:
        print_json({"node": node, "file": str(path), "slow_compute": factor})
        return
    say(f"{node}: its fake cards compute {factor:g}× slower; written to {path}")


@app.command()
def clear(
    node: Annotated[str, typer.Argument(help="A fake node of the local baige up.")],
    card: Annotated[int | None, typer.Option(help="Only this card (default: all).")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Heal a fake node's cards: its checks pass again (the policy uncordons it after its
    quiet window)."""
    from baige.hw.health import FakeHealth  # noqa: PLC0415

    try:
        path = _file(home, node)
        FakeHealth(path).clear(card)
    except (ValueError, OSError) as err:
        fail(str(err), json_output)
    if json_output:
        print_json({"node": node, "file": str(path), "cleared": "all" if card is None else card})
        return
    say(f"{node}: {'all cards' if card is None else f'card {card}'} healthy again")
