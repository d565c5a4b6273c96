"""What the Slurm test modules share: a real Slurm cluster of logical nodes for the module,
and a `baige up` on it (SQLite, the slurm backend) for each test."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from baige.backends.slurm_cluster import SlurmCluster, SlurmNode, slurm_available
from baige.control.platform import Platform, PlatformOptions

from .conftest import RunningPlatform


def slurm_cluster(root: Path, nodes: Sequence[SlurmNode]) -> Iterator[SlurmCluster]:
    """Start the cluster (skip without root or Slurm; fail under CI=true), stop it after."""
    reason = slurm_available()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Slurm tests cannot run: {reason}")
        pytest.skip(reason)
    cluster = SlurmCluster(root, tuple(nodes)).start()
    yield cluster
    cluster._run("scancel", "--full", "-u", "root", check=False)
    cluster.stop()


def slurm_platform(
    slurm: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, settle: bool = True
) -> Iterator[RunningPlatform]:
    """`baige up` with the slurm backend on ``slurm``; with ``settle``, its jobs are
    cancelled after and the cluster waited for until idle (the next test's start)."""
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    options = PlatformOptions(
        db_url=f"sqlite:///{tmp_path / 'baige.db'}",
        home=tmp_path / "home",
        accelerators=None,
        backend="slurm",
        interval=0.3,
    )
    running = RunningPlatform(Platform(options)).__enter__()
    yield running
    running.__exit__()
    if settle:
        slurm._run("scancel", "--full", "-u", "root", check=False)
        slurm.wait_idle()
