"""``baige plan``: the best parallel strategies for training a model on a (mixed) cluster.

Bad input — an unknown chip or model, a field the catalog cannot fill, degrees that do not
divide the heads, a model that fits nowhere — ends with a message naming the file, field or
reason and exit code 2, never a traceback. ``--json`` prints the same facts for scripts
(errors too, as ``{"error": …, "status": null, "problems": […]}``, see ``baige.cli.output``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, NoReturn

import typer

from baige.cli.output import fail, print_json, print_table, say

__all__ = ["plan"]

EXIT_BAD_INPUT = 2


class RecomputeChoice(StrEnum):
    none = "none"
    selective = "selective"
    full = "full"


def _fail(
    message: str, json_output: bool, problems: list[dict[str, object]] | None = None
) -> NoReturn:
    fail(message, json_output, problems=problems, code=EXIT_BAD_INPUT)


def plan(
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="A preset name (llama3-70b, …) or a Model YAML file."),
    ],
    cluster: Annotated[str, typer.Option("--cluster", "-c", help="A Cluster YAML file.")],
    batch: Annotated[
        int, typer.Option("--batch", "-b", min=1, help="Global batch, in sequences per iteration.")
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    top: Annotated[int, typer.Option("--top", "-k", min=1, max=50, help="Plans to show.")] = 5,
    software: Annotated[
        str,
        typer.Option(
            help="Training software: megatron-core, megatron-2022, megatron-2021, "
            "megatron-deepspeed, meta-llama3, torchtitan-fsdp2, or a kind: Software YAML file."
        ),
    ] = "megatron-core",
    tp: Annotated[int | None, typer.Option("--tp", min=1, help="Fix tensor parallelism.")] = None,
    pp: Annotated[int | None, typer.Option("--pp", min=1, help="Fix pipeline stages.")] = None,
    dp: Annotated[int | None, typer.Option("--dp", min=1, help="Fix data parallelism.")] = None,
    cp: Annotated[int | None, typer.Option("--cp", min=1, help="Fix context parallelism.")] = None,
    ep: Annotated[int | None, typer.Option("--ep", min=1, help="Fix expert parallelism.")] = None,
    micro_batch: Annotated[
        int | None, typer.Option("--micro-batch", min=1, help="Fix the micro-batch size.")
    ] = None,
    recompute: Annotated[
        RecomputeChoice | None, typer.Option(help="Fix activation recomputation.")
    ] = None,
    recompute_layers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Fix how many layers per stage full recomputation covers (the rest keep "
            "their activations; implies --recompute full).",
        ),
    ] = None,
    interleave: Annotated[
        int | None,
        typer.Option(min=1, help="Fix the model chunks per pipeline stage (1 = plain 1F1B)."),
    ] = None,
    distributed_optimizer: Annotated[
        bool | None,
        typer.Option(
            "--distributed-optimizer/--no-distributed-optimizer",
            help="Fix whether optimizer states are sharded over data-parallel ranks.",
            show_default=False,
        ),
    ] = None,
    last_stage_layers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Fix the layers on the last pipeline stage (the rest split evenly)."
        ),
    ] = None,
) -> None:
    """Search parallel strategies (TP/PP/DP/CP/EP, micro-batch, recomputation, interleaving,
    distributed optimizer, layer split, and on mixed clusters the split of stages and batch
    across chip types) and print the best, with predicted iteration time, tokens/s, MFU,
    memory per card, bottleneck and what sets each plan apart from the best. Any field can be
    fixed; fixing them all evaluates one strategy."""
    # imported here so that `baige --help` does not pay for numpy
    from baige.api.loader import SpecError  # noqa: PLC0415
    from baige.plan import (  # noqa: PLC0415
        Constraints,
        PlanError,
        Recompute,
        load_cluster,
        load_model,
        load_software,
        notes,
        report_dict,
        tables,
    )
    from baige.plan import plan as make_plan  # noqa: PLC0415

    try:
        sw = load_software(software)
        spec = load_model(model)
        chips = load_cluster(cluster)
    except SpecError as err:
        _fail(str(err), json_output, err.as_dicts())
    except (LookupError, ValueError) as err:
        _fail(str(err), json_output)
    limits = Constraints(
        tp=tp,
        pp=pp,
        dp=dp,
        cp=cp,
        ep=ep,
        micro_batch=micro_batch,
        recompute=None if recompute is None else Recompute[recompute.value.upper()],
        interleave=interleave,
        distributed_optimizer=distributed_optimizer,
        last_stage_layers=last_stage_layers,
        recompute_layers=recompute_layers,
    )
    try:
        report = make_plan(spec, chips, sw, batch, top_k=top, limits=limits)
    except PlanError as err:
        _fail(str(err), json_output)

    if json_output:
        print_json(report_dict(report))
        return
    kinds = ", ".join(f"{g.count:,} {g.chip}" for g in chips.groups)
    say(
        f"{spec.name} ({spec.params / 1e9:.1f} B parameters) on {chips.name} ({kinds}); "
        f"global batch {batch:,} × {spec.seq_len:,} tokens; software {sw.name}"
    )
    for table in tables(report):
        print_table(table.title, table.columns, table.rows)
    for line in notes(report):
        say(line, style="yellow" if line.startswith("assumption:") else "dim")
