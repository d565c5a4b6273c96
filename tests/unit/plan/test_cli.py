"""``baige plan`` as a user runs it, through a local typer app around the command function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from baige.cli import plan as plan_cli

EXAMPLES = Path(__file__).parents[3] / "examples" / "plan"

app = typer.Typer()
app.command(name="plan")(plan_cli.plan)


@app.command()
def _other() -> None:
    """A second command, so that typer keeps ``plan`` as a named sub-command."""


runner = CliRunner()


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["plan", *args])
    return result.exit_code, result.stdout, result.stderr


def test_table_for_people() -> None:
    code, out, _ = _run("--model", "llama3-8b", "--cluster", str(EXAMPLES / "h100-64.yaml"),
                        "--batch", "512", "--top", "3")  # fmt: skip
    assert code == 0, out
    assert "Best plans" in out and "TP" in out and "MFU" in out
    assert "searched" in out


def test_json_for_scripts() -> None:
    model, cluster = str(EXAMPLES / "model-13b.yaml"), str(EXAMPLES / "h100-64.yaml")
    code, out, _ = _run(
        "--model", model, "--cluster", cluster, "--batch", "256", "--json", "--top", "2"
    )
    assert code == 0
    data = json.loads(out)
    assert data["model"]["name"] == "my-13b" and len(data["plans"]) == 2
    best = data["plans"][0]
    assert best["iteration_s"] <= data["plans"][1]["iteration_s"]
    assert best["memory_gb"] <= best["usable_memory_gb"]
    assert set(best["strategy"]) >= {"tp", "pp", "dp", "cp", "ep", "micro_batch", "recompute"}


def test_mixed_cluster_reports_the_loss_and_the_assumption() -> None:
    code, out, _ = _run("--model", "llama3-8b", "--cluster", str(EXAMPLES / "mixed-10k.yaml"),
                        "--batch", "4096", "--json", "--top", "2")  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert 0 <= data["mixed_loss"] < 0.5
    assert len(data["alone"]) == 3
    assert any("ascend-910b" in a and "256" in a for a in data["assumptions"])


def _cluster(tmp_path: Path, body: str) -> str:
    path = tmp_path / "cluster.yaml"
    path.write_text(body)
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "llama3-405b", "--batch", "64"], "no strategy fits in memory"),
        (
            ["--model", "llama3-8b", "--batch", "64", "--tp", "3"],
            "does not divide the attention heads",
        ),
        (["--model", "llama3-9b", "--batch", "64"], "unknown model"),
        (["--model", "llama3-8b", "--batch", "64", "--software", "deepspeed"], "unknown software"),
        (["--model", "nothere.yaml", "--batch", "64"], "nothere.yaml: file not found"),
    ],
)
def test_bad_input_exits_2_with_a_reason(tmp_path: Path, args: list[str], message: str) -> None:
    cluster = _cluster(
        tmp_path, "kind: Cluster\nname: c\ngroups:\n  - {chip: h100, count: 8, nic_gbps: 400}\n"
    )
    code, out, err = _run("--cluster", cluster, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("group", "message"),
    [
        (
            "{chip: h1000, count: 8, nic_gbps: 400}",
            "cluster.yaml:4: groups[0].chip: unknown accelerator",
        ),
        ("{chip: kunlunxin-p800, count: 8, nic_gbps: 400}", "groups[0].peak_tflops"),
        ("{chip: h100, count: 8, nic_gbs: 400}", "did you mean 'nic_gbps'"),
    ],
)
def test_bad_cluster_file_names_line_and_field(tmp_path: Path, group: str, message: str) -> None:
    cluster = _cluster(tmp_path, f"kind: Cluster\nname: c\ngroups:\n  - {group}\n")
    code, _, err = _run("--model", "llama3-8b", "--cluster", cluster, "--batch", "64")
    assert code == 2 and message in err.replace("\n", "")


def test_errors_are_json_too_with_json(tmp_path: Path) -> None:
    cluster = _cluster(
        tmp_path, "kind: Cluster\nname: c\ngroups:\n  - {chip: h1000, count: 8, nic_gbps: 1}\n"
    )
    code, out, _ = _run("--model", "llama3-8b", "--cluster", cluster, "--batch", "64", "--json")
    assert code == 2
    data = json.loads(out)
    assert data["problems"][0]["line"] == 4 and data["problems"][0]["field"] == "groups[0].chip"


def _h100_8(tmp_path: Path) -> str:
    return _cluster(
        tmp_path, "kind: Cluster\nname: c\ngroups:\n  - {chip: h100, count: 64, nic_gbps: 400}\n"
    )


def test_output_says_what_mfu_counts_and_the_peak(tmp_path: Path) -> None:
    code, out, _ = _run("--model", "llama3-8b", "--cluster", _h100_8(tmp_path), "--batch", "512")
    text = out.replace("\n", " ")
    assert code == 0
    assert "MFU = model FLOPs" in text and "recomputation excluded" in text
    assert "989 TFLOP/s" in text


def test_top_rows_say_what_differs_from_the_best(tmp_path: Path) -> None:
    code, out, _ = _run("--model", "llama3-8b", "--cluster", _h100_8(tmp_path), "--batch", "512",
                        "--top", "3", "--json")  # fmt: skip
    assert code == 0
    plans = json.loads(out)["plans"]
    assert plans[0]["differs_from_best"] == "same"
    assert all(p["differs_from_best"] not in ("", "same") for p in plans[1:])
    assert json.loads(out)["mfu_definition"].startswith("MFU")


def test_every_strategy_field_can_be_fixed(tmp_path: Path) -> None:
    args = ["--model", "llama3-70b", "--cluster", _h100_8(tmp_path), "--batch", "64", "--json",
            "--tp", "8", "--pp", "4", "--dp", "2", "--cp", "1", "--micro-batch", "1",
            "--recompute", "selective", "--interleave", "2", "--distributed-optimizer",
            "--last-stage-layers", "14", "--top", "5"]  # fmt: skip
    code, out, err = _run(*args)
    assert code == 0, err
    plans = json.loads(out)["plans"]
    assert len(plans) == 1
    assert plans[0]["strategy"] == {
        "tp": 8, "pp": 4, "dp": 2, "cp": 1, "ep": 1, "micro_batch": 1,
        "recompute": "selective", "interleave": 2, "distributed_optimizer": True,
        "last_stage_layers": 14, "recompute_layers": None,
    }  # fmt: skip


def test_micro_batch_that_divides_nothing_says_why(tmp_path: Path) -> None:
    code, _, err = _run("--model", "llama3-8b", "--cluster", _h100_8(tmp_path), "--batch", "512",
                        "--micro-batch", "3")  # fmt: skip
    text = err.replace("\n", " ")
    assert code == 2
    assert "micro_batch=3 does not divide" in text and "micro-batches that do: 1, 2, 4" in text


def test_memory_error_names_the_card_and_suggests_a_fix(tmp_path: Path) -> None:
    cluster = _cluster(
        tmp_path, "kind: Cluster\nname: c\ngroups:\n  - {chip: a100-80g, count: 8, nic_gbps: 200}\n"
    )
    code, _, err = _run("--model", "llama3-405b", "--cluster", cluster, "--batch", "64")
    text = " ".join(err.split())
    assert code == 2
    assert "a a100" not in text and "A100" in text
    assert "To fix:" in text and "more cards" in text


def test_custom_software_file(tmp_path: Path) -> None:
    path = tmp_path / "sw.yaml"
    path.write_text("kind: Software\nname: our-megatron\nbase: megatron-core\ntp_overlap: 0.9\n")
    code, out, err = _run("--model", "llama3-8b", "--cluster", _h100_8(tmp_path), "--batch", "512",
                          "--software", str(path), "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["software"] == "our-megatron"
