"""``python -m baige.runtime [OPTIONS] -- COMMAND…``: ``baige run`` without the rest of the CLI
(what the tests and the benchmark start, and what works before ``baige run`` is wired in)."""

from __future__ import annotations

import typer

from baige.cli.run import CONTEXT_SETTINGS, run

__all__ = ["app"]

app = typer.Typer(add_completion=False)
app.command(context_settings=CONTEXT_SETTINGS)(run)

if __name__ == "__main__":
    app()
