"""``baige``: the command line. Each command group lives in its own module."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from baige import __version__
from baige.api import SpecError, load_spec_file
from baige.cli import control, sim
from baige.cli import plan as plan_cli
from baige.cli import run as run_cli
from baige.cli.output import console, err_console, print_json, print_table

app = typer.Typer(
    name="baige",
    help="Baige: one pool of mixed accelerators for training and inference.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(sim.app, name="sim")
app.command(name="plan")(plan_cli.plan)
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


@app.command()
def version() -> None:
    """Print Baige's version."""
    console.print(__version__)


@app.command()
def catalog(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
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
    print_table(
        "Accelerators",
        ["type", "name", "BF16 dense", "memory", "bandwidth", "scale-up", "visibility variable"],
        (
            (
                key,
                chip.name,
                str(chip.bf16_dense_tflops),
                str(chip.memory_gb),
                str(chip.memory_bandwidth_tbs),
                f"{chip.scale_up_gbs} ({chip.scale_up_link})",
                chip.visibility_env,
            )
            for key, chip in CATALOG.items()
        ),
    )


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
                    err_console.print(
                        f"[red]error[/red] {problem}", highlight=False, soft_wrap=True
                    )
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
            console.print(f"[green]ok[/green] {path}: {names}", highlight=False, soft_wrap=True)
    if json_output:
        print_json(results)
    if failed:
        raise typer.Exit(code=1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
