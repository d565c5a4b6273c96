"""``baige``: the command line. Each command group lives in its own module."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.exceptions import TyperException

from baige import __version__
from baige.api import SpecError, load_spec_file
from baige.cli import control, fault, sim
from baige.cli import diagnose as diagnose_cli
from baige.cli import plan as plan_cli
from baige.cli import run as run_cli
from baige.cli.output import error_json, print_json, print_table, say

if TYPE_CHECKING:
    from baige.hw.figures import Figure

app = typer.Typer(
    name="baige",
    help="Baige: one pool of mixed accelerators for training and inference.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(sim.app, name="sim")
app.add_typer(fault.app, name="fault")
app.command(name="plan")(plan_cli.plan)
app.command(name="diagnose")(diagnose_cli.diagnose)
# `baige run [OPTIONS] -- python train.py ...`: options after the script are the script's
app.command(name="run", context_settings=run_cli.CONTEXT_SETTINGS)(run_cli.run)
for _command in (
    control.up,
    control.submit,
    control.jobs,
    control.job,
    control.logs,
    control.cancel,
    control.services,
    control.scale,
    control.queues,
    control.nodes,
    control.cordon,
    control.drain,
    control.uncordon,
    control.token,
):
    app.command()(_command)


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command()
def version(json_output: JsonOption = False) -> None:
    """Print Baige's version."""
    if json_output:
        print_json({"version": __version__})
        return
    say(__version__)


@app.command()
def catalog(json_output: JsonOption = False) -> None:
    """List the accelerator types Baige knows, with their figures and sources."""
    from baige.hw.catalog import CATALOG  # noqa: PLC0415 - keeps `baige --help` fast

    if json_output:
        print_json(
            {
                key: {
                    "name": chip.name,
                    "vendor": chip.vendor,
                    "visibility_env": chip.visibility_env,
                    "bf16_dense_tflops": chip.bf16_dense_tflops.value,
                    "memory_gb": chip.memory_gb.value,
                    "memory_bandwidth_tbs": chip.memory_bandwidth_tbs.value,
                    "scale_up_gbs": chip.scale_up_gbs.value,
                    "scale_up_link": chip.scale_up_link,
                    "sources": {
                        "bf16_dense_tflops": chip.bf16_dense_tflops.source,
                        "memory_gb": chip.memory_gb.source,
                        "memory_bandwidth_tbs": chip.memory_bandwidth_tbs.source,
                        "scale_up_gbs": chip.scale_up_gbs.source,
                    },
                }
                for key, chip in CATALOG.items()
            }
        )
        return
    # every figure carries a footnote number; the sources are listed under the table
    sources: dict[str, int] = {}

    def cited(figure: Figure, text: str | None = None) -> str:
        shown = str(figure) if text is None else text
        if not figure.source:
            return shown
        number = sources.setdefault(figure.source, len(sources) + 1)
        return f"{shown} [{number}]"

    rows = [
        (
            key,
            chip.name,
            cited(chip.bf16_dense_tflops),
            cited(chip.memory_gb),
            cited(chip.memory_bandwidth_tbs),
            cited(chip.scale_up_gbs, f"{chip.scale_up_gbs} ({chip.scale_up_link})"),
            chip.visibility_env,
        )
        for key, chip in CATALOG.items()
    ]
    print_table(
        "Accelerators",
        ["type", "name", "BF16 dense", "memory", "bandwidth", "scale-up", "visibility variable"],
        rows,
        keep_whole={"type"},
    )
    say("Sources:")
    for source, number in sources.items():
        say(f"[{number}] {source}")


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="YAML spec files.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check spec files (jobs, services, queues, nodes); every error names file, line, field."""
    results: list[dict[str, object]] = []
    failed = False
    for path in files:
        try:
            specs = load_spec_file(path)
        except SpecError as err:
            failed = True
            results.append({"file": str(path), "ok": False, "problems": err.as_dicts()})
            if not json_output:
                for problem in err.problems:
                    say(f"error {problem}", err=True)
            continue
        results.append(
            {
                "file": str(path),
                "ok": True,
                "specs": [{"kind": s.kind, "name": s.name} for s in specs],
            }
        )
        if not json_output:
            names = ", ".join(f"{s.kind} {s.name}" for s in specs)
            say(f"ok {path}: {names}")
    if json_output:
        print_json(results)
    if failed:
        raise typer.Exit(code=1)


def main(argv: list[str] | None = None) -> None:
    """The ``baige`` command. With ``--json`` anywhere on the line, even a usage error (a
    missing argument, an unknown option) is the one JSON error shape on stdout, exit 2."""
    args = sys.argv[1:] if argv is None else argv
    if "--json" not in args:
        app(args=args)
        return
    try:
        # without standalone mode, click returns a command's exit code instead of exiting
        code = app(args=args, standalone_mode=False)
    except typer.Exit as done:
        raise SystemExit(done.exit_code) from None
    except typer.Abort:
        raise SystemExit(1) from None
    except TyperException as err:  # a usage error: a missing argument, an unknown option
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        param = getattr(getattr(err, "param", None), "name", None) or ""
        print_json(error_json(message, problems=[{"field": param, "message": message}]))
        raise SystemExit(getattr(err, "exit_code", 2)) from None
    if isinstance(code, int) and code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
