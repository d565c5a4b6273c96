"""One training job across two accelerator types in a real `baige up`: placed on a card of
each type, its split planned for that placement, written to a file every replica is told
about (BAIGE_HETERO_PLAN), each replica shown its own type's cards, and the split reported
on the job."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from baige.api.loader import load_specs
from baige.plan.runtime_split import split_for_placement

from .conftest import wait_for

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """\
import json, os
plan = os.environ['BAIGE_HETERO_PLAN']
data = json.load(open(plan))
rank = int(os.environ['RANK'])
mine = data['ranks'][rank]
print('rank', rank, 'type', os.environ['BAIGE_ACCELERATOR_TYPE'], 'plan-type', mine['type'],
      'micro', mine['micro_batches'], 'world', os.environ['WORLD_SIZE'], 'file', plan)
print('visible', rank, os.environ.get('CUDA_VISIBLE_DEVICES'),
      os.environ.get('ASCEND_RT_VISIBLE_DEVICES'))
"""

JOB = f"""\
kind: TrainingJob
name: mixed
queue: default
replicas: 2
accelerators: {{count: 1, types: [h100, ascend-910b], mix: allowed}}
batch: {{size: 32, micro_batch: 4}}
command: [python3, -c, {json.dumps(SCRIPT)}]
"""


def test_a_job_spans_two_types_with_its_split(make_platform, sqlite_url: str) -> None:
    running = make_platform(sqlite_url, nodes=1, accel="h100:1,ascend-910b:1")
    client = running.client()
    job = client.submit(load_specs(JOB)[0]).id  # type: ignore[arg-type]
    wait_for(lambda: client.job(job).phase == "succeeded", timeout=60)
    view = client.job(job)
    assert view.accelerator_type == "h100+ascend-910b"
    assert view.split is not None
    expected = split_for_placement(["h100", "ascend-910b"], 32, 4)
    assert [(p.type, p.ranks) for p in view.split.parts] == [("h100", [0]), ("ascend-910b", [1])]
    assert [m for p in view.split.parts for m in p.micro_batches] == [
        r.micro_batches for r in expected.ranks
    ]
    assert view.split.global_batch == 32 and view.split.micro_batch_size == 4
    output = b"".join(client.logs(job)).decode()
    for rank, accel in enumerate(("h100", "ascend-910b")):
        assert f"rank {rank} type {accel} plan-type {accel}" in output
        assert "world 2" in output
    # each replica sees its own type's cards through its vendor's variable
    assert "visible 0 0 None" in output
    assert "visible 1 None 0" in output
    events = [e.message for e in client.events(job)]
    assert any("1 h100 + 1 ascend-910b" in message for message in events)


def test_baige_run_trains_with_the_planned_split(
    make_platform, sqlite_url: str, tmp_path: Path
) -> None:
    """The example trainer under ``baige run``, one replica on each type: every rank joins
    with baige.train.hetero from the plan Baige wrote; the rank on the slower type is killed
    mid-run, both replicas' groups restart and resume from memory, and the job finishes."""
    running = make_platform(sqlite_url, nodes=1, accel="h100:1,a100-80g:1")
    client = running.client()
    out = tmp_path / "out.json"
    python = sys.executable
    spec = f"""\
kind: TrainingJob
name: hetero
queue: default
replicas: 2
accelerators: {{count: 1, types: [h100, a100-80g], mix: allowed}}
batch: {{size: 16, micro_batch: 2}}
working_dir: {REPO}
env: {{BAIGE_FAULT: "kill:rank=1:step=7"}}
command: [{python}, -m, baige.runtime, --nproc-per-node, "1", --, {python},
          examples/runtime/train_hetero.py, --steps, "12", --save-every, "3", --out, {out}]
"""
    job = client.submit(load_specs(spec)[0]).id  # type: ignore[arg-type]
    wait_for(lambda: client.job(job).phase in ("succeeded", "failed"), timeout=120)
    output = b"".join(client.logs(job)).decode()
    assert client.job(job).phase == "succeeded", output[-3000:]
    plan = split_for_placement(["h100", "a100-80g"], 16, 2)
    for rank, accel in enumerate(("h100", "a100-80g")):
        local = plan.ranks[rank].samples
        assert f"rank={rank}/2 type={accel} local_batch={local} of 16" in output
    assert json.loads(out.read_text())["step"] == 11
    assert "rank=1 restored step=5 source=memory" in output
    reasons = [e.reason for e in client.events(job)]
    assert "Recovery" in reasons, reasons
