"""Printing for the CLI: one grammar for every command.

- For people: rich tables and lines. Everything printed through rich is escaped or wrapped in
  :class:`~rich.text.Text`, so text from users and servers (``[python, train.py]``) is never
  taken for markup. ID columns never wrap, so an ID can be copied from an 80-column terminal.
- For scripts: every command but ``baige run`` (whose options and output belong to the
  training command it wraps) takes ``--json``. Success prints the command's JSON document on
  stdout; an error prints :func:`error_json`'s shape on stdout — the same shape as the REST
  API's error bodies — and exits non-zero::

      {"error": "one line", "status": 404, "problems": [{"field": …, "line": …, "message": …}]}

  ``status`` is the HTTP status for errors that came from the control plane, else null.
- Without ``--json``, errors go to stderr as ``error <message>`` lines.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Iterable, Sequence
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = [
    "KEEP_WHOLE",
    "console",
    "err_console",
    "error_json",
    "fail",
    "print_json",
    "print_json_line",
    "print_table",
    "say",
]

console = Console()
err_console = Console(stderr=True)

# Table columns that hold something a user copies into the next command: never wrapped.
KEEP_WHOLE = frozenset({"ID", "NODE", "ENDPOINTS"})


def print_json(data: object) -> None:
    """JSON on stdout, nothing else: scripts pipe it to jq."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_json_line(data: object) -> None:
    """One JSON document on one line (for streams such as ``baige logs --json``)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def say(message: str, *, style: str | None = None, err: bool = False) -> None:
    """A plain line for people: never markup, never re-highlighted, never hard-wrapped."""
    text = Text(message, style=style or "")
    (err_console if err else console).print(text, highlight=False, soft_wrap=True)


def error_json(
    message: str, status: int | None = None, problems: Sequence[Any] | None = None
) -> dict[str, object]:
    """The one shape of an error under ``--json`` (the REST API's error body, plus status)."""
    return {"error": message, "status": status, "problems": list(problems or [])}


def fail(
    message: str,
    json_output: bool,
    *,
    status: int | None = None,
    problems: Sequence[Any] | None = None,
    code: int = 1,
    detail: str | None = None,
) -> NoReturn:
    """End the command with an error: JSON on stdout with ``--json``, else lines on stderr.

    ``detail`` is the human text when it says more than ``message`` (problems listed under it).
    """
    if json_output:
        print_json(error_json(message, status, problems))
    else:
        for line in (detail or message).splitlines() or [""]:
            err_console.print(
                Text.assemble(("error", "red"), " ", line), highlight=False, soft_wrap=True
            )
    raise typer.Exit(code=code)


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    keep_whole: Collection[str] = KEEP_WHOLE,
) -> None:
    """A table; columns named in ``keep_whole`` (case-insensitive) never wrap, others fold."""
    whole = {c.upper() for c in keep_whole}
    table = Table(title=escape(title), title_justify="left")
    for column in columns:
        if column.upper() in whole:
            table.add_column(escape(column), no_wrap=True, overflow="ignore")
        else:
            table.add_column(escape(column), overflow="fold")
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))
    console.print(table)
