"""Reading trace files: the Alibaba GPU node and pod lists, a generic job CSV, a QPS series.

Every bad row is a :class:`~baige.api.loader.SpecError` naming the file, the line and the
column (``pods.csv:212: gpu_milli: must be an integer in 1..1000, not 'abc'``), so a typo in
a 10,000-row trace is found in one run rather than by reading a traceback.

The generic job CSV has one row per job, with a header naming its columns (order free):

========================  =========================================================  ========
column                    meaning                                                    default
========================  =========================================================  ========
``id``                    unique job name                                            required
``submit``                submission time, seconds from the start of the trace       required
``duration``              run time at full size, seconds (``2h30m`` also accepted)   required
``gpus``                  accelerators per replica                                   required
``replicas``              replicas (a gang for training)                             1
``min_replicas``          elastic floor (training) or autoscaling floor (inference)  replicas
``gpu_milli``             share of one card per replica, 1..1000 (``gpus`` must be 1) 1000
``kind``                  ``training`` or ``inference``                              training
``queue``                 queue name                                                 default
``priority``              integer, higher first                                      0
``types``                 accepted accelerator types, ``|``-separated, preferred first any
``time_limit``            the job's declared time limit (lets backfill plan)         none
========================  =========================================================  ========

An inference row is a service that runs ``replicas`` replicas for ``duration`` seconds.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from baige.api.loader import SpecError, SpecProblem
from baige.api.quantities import parse_duration_s
from baige.sched.model import MILLI

__all__ = [
    "JOB_COLUMNS",
    "POD_COLUMNS",
    "AlibabaNode",
    "AlibabaPod",
    "CsvJob",
    "read_alibaba_nodes",
    "read_alibaba_pods",
    "read_job_csv",
    "read_qps_curve",
]

_T = TypeVar("_T")
_MAX_PROBLEMS = 20  # a file with thousands of bad rows: the first twenty say enough


@dataclass(frozen=True, slots=True)
class AlibabaNode:
    name: str
    cpu_milli: int
    memory_mib: int
    gpus: int
    model: str  # "" for a CPU-only node


@dataclass(frozen=True, slots=True)
class AlibabaPod:
    name: str
    line: int
    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int  # share of each GPU (1000 = whole)
    gpu_spec: tuple[str, ...]  # accepted models; () = any
    qos: str
    creation: float
    deletion: float
    scheduled: float | None
    timed: bool = True  # has creation and deletion times (a replay over time needs them)


@dataclass(frozen=True, slots=True)
class CsvJob:
    id: str
    line: int
    submit: float
    duration: float
    gpus: int
    replicas: int
    min_replicas: int | None
    gpu_milli: int
    kind: str
    queue: str
    priority: int
    types: tuple[str, ...]
    time_limit: float | None


JOB_COLUMNS = (
    "id",
    "submit",
    "duration",
    "gpus",
    "replicas",
    "min_replicas",
    "gpu_milli",
    "kind",
    "queue",
    "priority",
    "types",
    "time_limit",
)


class _Rows:
    """A CSV file read row by row, collecting problems with their line numbers."""

    def __init__(self, path: Path, required: tuple[str, ...], known: tuple[str, ...] = ()):
        self.path = path
        self.source = str(path)
        self.problems: list[SpecProblem] = []
        self.required = required
        self.known = known

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        try:
            text = self.path.read_text(encoding="utf-8-sig")  # a BOM is not a header letter
        except FileNotFoundError:
            raise SpecError([SpecProblem(self.source, None, "", "file not found")]) from None
        except UnicodeDecodeError as err:
            raise SpecError(
                [SpecProblem(self.source, None, "", f"not UTF-8 text: {err}")]
            ) from None
        except OSError as err:
            raise SpecError(
                [SpecProblem(self.source, None, "", f"cannot be read: {err}")]
            ) from None
        lines = text.splitlines(keepends=True)
        skipped = 0  # a comment block before the header (say where a fixture came from)
        while skipped < len(lines) and lines[skipped].startswith("#"):
            skipped += 1
        reader = csv.reader(lines[skipped:])
        try:
            header = [h.strip() for h in next(reader, [])]
            if not header:
                raise SpecError([SpecProblem(self.source, skipped + 1, "", "no header row")])
            self._check_header(header, skipped + 1)
            for values in reader:
                line = skipped + reader.line_num
                if not values or all(not v.strip() for v in values):
                    continue
                if len(values) != len(header):
                    self.fail(line, "", f"has {len(values)} fields, the header {len(header)}")
                    continue
                yield line, dict(zip(header, (v.strip() for v in values), strict=True))
        except csv.Error as err:
            raise self._error(f"not valid CSV: {err}") from None
        if self.problems:
            raise SpecError(self.problems)

    def _error(self, message: str) -> SpecError:
        return SpecError([SpecProblem(self.source, None, "", message)])

    def _check_header(self, header: list[str], line: int) -> None:
        missing = [c for c in self.required if c not in header]
        if missing:
            message = f"header lacks column(s) {', '.join(missing)} (found: {', '.join(header)})"
            raise SpecError([SpecProblem(self.source, line, "", message)])
        unknown = [c for c in header if self.known and c not in self.known]
        if unknown:
            message = f"unknown column; known: {', '.join(self.known)}"
            raise SpecError([SpecProblem(self.source, line, unknown[0], message)])

    def fail(self, line: int, column: str, message: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(SpecProblem(self.source, line, column, message))

    def get(
        self, line: int, row: dict[str, str], column: str, parse: Callable[[str], _T], default: _T
    ) -> _T:
        text = row.get(column, "")
        if text == "":
            return default
        try:
            return parse(text)
        except ValueError as err:
            self.fail(line, column, str(err))
            return default


def _int(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number (``2.0`` and ``2e3`` are; ``2.5`` is an error, never truncated)."""

    def parse(text: str) -> int:
        try:
            number = float(text) if "." in text or "e" in text.lower() else int(text)
        except ValueError:
            raise ValueError(f"must be an integer, not {text!r}") from None
        if isinstance(number, float) and (not math.isfinite(number) or number != int(number)):
            raise ValueError(f"must be a whole number, not {text!r}")
        value = int(number)
        if value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {bound}, not {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = parse_duration_s(text)
    except ValueError as err:
        raise ValueError(str(err)) from None
    if value < 0 or math.isnan(value) or math.isinf(value):
        raise ValueError(f"must be a non-negative time, not {text!r}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"must be a number, not {text!r}") from None
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"must be a non-negative number, not {text!r}")
    return value


_MISSING = -1


_NODE_2026 = ("node_name", "gpu_model", "gpu_capacity_num", "cpu_num")


def _node_columns(path: Path) -> tuple[str, ...]:
    """Which node list this is: the 2023 one (``sn, cpu_milli, memory_mib, gpu, model``) or
    the 2026 one (``node_name, gpu_model, gpu_capacity_num, cpu_num``: CPU in cores, no
    memory column)."""
    try:
        head = path.read_text(encoding="utf-8-sig").lstrip().splitlines()[:1]
    except (OSError, UnicodeDecodeError):
        return ("sn", "cpu_milli", "memory_mib", "gpu", "model")  # _Rows says what is wrong
    header = {h.strip() for h in head[0].split(",")} if head else set()
    if set(_NODE_2026) <= header:
        return _NODE_2026
    return ("sn", "cpu_milli", "memory_mib", "gpu", "model")


def _cores(text: str) -> int:
    """CPU cores (``cpu_num``) as milli-cores; fractional cores are fine."""
    cores = _number(text)
    return round(cores * 1000)


def read_alibaba_nodes(path: Path) -> list[AlibabaNode]:
    """A node list, one row per node: ``openb_node_list_all_node.csv`` (``sn, cpu_milli,
    memory_mib, gpu, model``) or the 2026 list (``node_name, gpu_model, gpu_capacity_num,
    cpu_num``; its nodes' memory is not tracked)."""
    columns = _node_columns(path)
    if columns == _NODE_2026:
        return _read_nodes_2026(path)
    rows = _Rows(path, columns)
    nodes: list[AlibabaNode] = []
    seen: set[str] = set()
    for line, row in rows:
        name = row["sn"]
        if not name:
            rows.fail(line, "sn", "a node needs a name")
            continue
        if name in seen:
            rows.fail(line, "sn", f"node {name!r} appears twice")
            continue
        seen.add(name)
        gpus = rows.get(line, row, "gpu", _int(0, 64), _MISSING)
        model = row["model"]
        if gpus > 0 and not model:
            rows.fail(line, "model", "a node with GPUs needs a model")
        nodes.append(
            AlibabaNode(
                name=name,
                cpu_milli=rows.get(line, row, "cpu_milli", _int(0), 0),
                memory_mib=rows.get(line, row, "memory_mib", _int(0), 0),
                gpus=max(gpus, 0),
                model=model,
            )
        )
    return nodes


def _read_nodes_2026(path: Path) -> list[AlibabaNode]:
    rows = _Rows(path, _NODE_2026)
    nodes: list[AlibabaNode] = []
    seen: set[str] = set()
    for line, row in rows:
        name = row["node_name"]
        if not name or name in seen:
            rows.fail(line, "node_name", f"node {name!r} appears twice" if name else "empty")
            continue
        seen.add(name)
        gpus = rows.get(line, row, "gpu_capacity_num", _int(0, 64), 0)
        model = _model(row["gpu_model"])
        if gpus > 0 and not model:
            rows.fail(line, "gpu_model", "a node with GPUs needs a model")
        nodes.append(AlibabaNode(name, rows.get(line, row, "cpu_num", _cores, 0), 0, gpus, model))
    return nodes


def _model(text: str) -> str:
    """A GPU model name; ``nan``/``NaN``/``None`` (how pandas writes a missing value) is none."""
    return "" if text.strip().lower() in ("nan", "none", "null", "n/a") else text.strip()


# the columns a pod list must have; the others are optional (the paper's multi-GPU lists
# have only these, which is all inflation needs; a replay over time needs the times too)
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
POD_TIMES = ("creation_time", "deletion_time")


def read_alibaba_pods(path: Path) -> list[AlibabaPod]:
    """``openb_pod_list_*.csv``: one row per task."""
    rows = _Rows(path, POD_COLUMNS)
    pods: list[AlibabaPod] = []
    for line, row in rows:
        row.setdefault("qos", "BE")  # a list without QoS: every task is batch work
        row.setdefault("gpu_spec", "")
        num_gpu = rows.get(line, row, "num_gpu", _int(0, 64), 0)
        gpu_milli = rows.get(line, row, "gpu_milli", _int(0, MILLI), 0)
        if num_gpu == 1 and gpu_milli == 0:
            rows.fail(line, "gpu_milli", "a task with one GPU needs a share in 1..1000")
        if num_gpu > 1 and gpu_milli not in (0, MILLI):
            rows.fail(line, "gpu_milli", f"a {num_gpu}-GPU task takes whole GPUs, not {gpu_milli}")
        qos = row["qos"]
        if qos not in ("LS", "BE", "Burstable", "Guaranteed"):
            rows.fail(line, "qos", f"must be LS, BE, Burstable or Guaranteed, not {qos!r}")
        creation = rows.get(line, row, "creation_time", _number, 0.0)
        deletion = rows.get(line, row, "deletion_time", _number, creation)
        scheduled = rows.get(line, row, "scheduled_time", _number, -1.0)
        if deletion < creation:
            rows.fail(line, "deletion_time", f"{deletion:g} is before creation_time {creation:g}")
        pods.append(
            AlibabaPod(
                name=row["name"] or f"line-{line}",
                line=line,
                cpu_milli=rows.get(line, row, "cpu_milli", _int(0), 0),
                memory_mib=rows.get(line, row, "memory_mib", _int(0), 0),
                num_gpu=num_gpu,
                gpu_milli=MILLI if num_gpu > 1 else gpu_milli,
                gpu_spec=tuple(m for m in (_model(s) for s in row["gpu_spec"].split("|")) if m),
                qos=qos,
                creation=creation,
                deletion=deletion,
                scheduled=None if scheduled < 0 else scheduled,
                timed=all(row.get(c, "") != "" for c in POD_TIMES),
            )
        )
    return pods


def read_job_csv(path: Path) -> list[CsvJob]:
    """The generic job trace described in this module's docstring."""
    rows = _Rows(path, ("id", "submit", "duration", "gpus"), JOB_COLUMNS)
    jobs: list[CsvJob] = []
    seen: set[str] = set()
    for line, row in rows:
        job_id = row["id"]
        if not job_id:
            rows.fail(line, "id", "a job needs an id")
        elif job_id in seen:
            rows.fail(line, "id", f"job {job_id!r} appears twice")
        seen.add(job_id)
        gpus = rows.get(line, row, "gpus", _int(1, 64), 1)
        replicas = rows.get(line, row, "replicas", _int(1), 1)
        min_replicas = rows.get(line, row, "min_replicas", _int(1), _MISSING)
        if min_replicas > replicas:
            rows.fail(line, "min_replicas", f"{min_replicas} is more than replicas ({replicas})")
        milli = rows.get(line, row, "gpu_milli", _int(1, MILLI), MILLI)
        if milli < MILLI and gpus != 1:
            rows.fail(line, "gpu_milli", "a share of a card needs gpus = 1")
        kind = row.get("kind", "") or "training"
        if kind not in ("training", "inference"):
            rows.fail(line, "kind", f"must be training or inference, not {kind!r}")
        priority = rows.get(line, row, "priority", _signed_int, 0)
        limit = rows.get(line, row, "time_limit", _seconds, -1.0)
        jobs.append(
            CsvJob(
                id=job_id,
                line=line,
                submit=rows.get(line, row, "submit", _seconds, 0.0),
                duration=rows.get(line, row, "duration", _seconds, 0.0),
                gpus=gpus,
                replicas=replicas,
                min_replicas=None if min_replicas == _MISSING else min_replicas,
                gpu_milli=milli,
                kind=kind,
                queue=row.get("queue", "") or "default",
                priority=priority,
                types=tuple(
                    t.strip().lower() for t in row.get("types", "").split("|") if t.strip()
                ),
                time_limit=None if limit < 0 else limit,
            )
        )
    return jobs


def _signed_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"must be an integer, not {text!r}") from None


def read_qps_curve(
    path: Path, *, bin_s: float = 300.0, request_type: str | None = None
) -> list[float]:
    """The load of a service over its trace, in ``bin_s`` bins, scaled so the busiest bin
    is 1.0: the shape inference demand follows (``alibaba-genai-2026/qps.csv``:
    ``timestamp_anon, value, container_ip, request_type``).

    Each row is one container's queries per second at one moment; a bin's load is the sum
    of its rows (containers report at a steady rate, so the sum is proportional to the
    total QPS)."""
    rows = _Rows(path, ("timestamp_anon", "value"))
    samples: list[tuple[float, float]] = []
    for line, row in rows:
        if request_type is not None and row.get("request_type", "") != request_type:
            continue
        stamp = rows.get(line, row, "timestamp_anon", _number, math.nan)
        value = rows.get(line, row, "value", _number, math.nan)
        if not math.isnan(stamp) and not math.isnan(value):
            samples.append((stamp, value))
    if not samples:
        what = f" of request_type {request_type!r}" if request_type else ""
        raise SpecError([SpecProblem(str(path), None, "", f"no samples{what} in the file")])
    start = min(s for s, _ in samples)
    end = max(s for s, _ in samples)
    count = max(1, math.ceil((end - start + 1) / bin_s))
    load = [0.0] * count
    for stamp, value in samples:
        load[min(count - 1, int((stamp - start) // bin_s))] += value
    peak = max(load)
    if peak <= 0:
        raise SpecError([SpecProblem(str(path), None, "value", "every sample is zero")])
    return [value / peak for value in load]
