"""Small scenarios for the simulator's tests, built on the trace slices in ``data/``."""

from __future__ import annotations

from pathlib import Path

from baige.sim.scenario import LoadedScenario, parse_scenario

DATA = Path(__file__).parent / "data"

SMALL = f"""\
kind: Simulation
name: small
seed: 3
duration: 12h
policy: baige
scheduler: {{interval: 60s}}
cluster:
  node_groups:
    - {{count: 8, type: h100, devices: 8, nodes_per_rack: 4, racks_per_block: 2}}
    - {{count: 4, type: a100-80g, devices: 8, nodes_per_rack: 4}}
queues:
  - {{name: serving, quotas: {{h100: {{guaranteed: 16, limit: 32}}, a100-80g: {{guaranteed: 8, limit: 16}}}}}}
  - {{name: research, quotas: {{h100: {{guaranteed: 24, limit: 64}}, a100-80g: {{guaranteed: 12, limit: 32}}}}}}
  - {{name: product, quotas: {{h100: {{guaranteed: 24, limit: 64}}, a100-80g: {{guaranteed: 12, limit: 32}}}}}}
workloads:
  synthetic:
    jobs: 400
    classes:
      - {{name: debug, share: 60, gpus: 1, duration: {{median: 20m, max: 6h}}, queues: [research, product]}}
      - {{name: node, share: 25, gpus: 8, duration: {{median: 1h, max: 8h}}, queues: [research, product], time_limit: 2}}
      - {{name: multi, share: 12, gpus: 8, replicas: [2, 3], elastic: 0.5, duration: {{median: 2h}}, queue: research, priority: 10}}
      - {{name: big, share: 3, gpus: 8, replicas: [4], duration: {{median: 3h}}, queue: product, types: [h100]}}
  inference:
    curve: {{path: {DATA / "qps.csv"}, bin: 30m, floor: 0.2}}
    tick: 20m
    services:
      - {{name: chat, count: 3, peak_replicas: 6, min_replicas: 1, gpus: 1}}
      - {{name: embed, count: 2, peak_replicas: 4, gpus: 1, milli: 250}}
training:
  checkpoint: {{interval: 15m, stall: 20s}}
  restart: {{detection: 30s, rescheduling: 10s, initialization: 60s, checkpoint_load: 30s}}
faults:
  node_failures_per_1000_node_days: 1500
  repair: 2h
  cordon_after: 2
  cordon_window: 1d
"""

INFLATION = f"""\
kind: Simulation
name: small-inflation
seed: 5
mode: inflation
cluster:
  alibaba_nodes: {{path: {DATA / "alibaba_nodes.csv"}, types: single}}
workloads:
  alibaba_pods: {{path: {DATA / "alibaba_pods.csv"}}}
inflation:
  policies: [random, fgd]
  seeds: 2
  up_to: 100
  step: 5
"""


def small(text: str = SMALL, source: str = "small.yaml") -> LoadedScenario:
    return parse_scenario(text, source)


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path
