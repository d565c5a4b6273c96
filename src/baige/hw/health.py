"""Device health: conditions a node's cards are in, from each vendor's own tools.

A node agent calls :meth:`HealthSource.check` every few seconds and reports what it finds;
the control plane's policy (:mod:`baige.control.health_policy`) decides what each condition
means for the node. One :class:`Condition` shape for every vendor:

* NVIDIA, through NVML (the ``nvidia-ml-py`` package, imported only where it is installed):
  XID events, volatile uncorrectable ECC, row-remap failures and pending retired pages,
  thermal and power throttling, NVLink error counters, a PCIe link below its maximum width
  or generation, fewer cards than the node registered with.
* Ascend, through ``npu-smi info -t health``: a card whose health is not ``OK``.
* Others: :class:`UnknownHealth`, which says so rather than reporting healthy.
* :class:`FakeHealth`, a declared fake: conditions a test or ``baige fault inject`` writes to
  a JSON file, reported as if the cards had raised them.

XID classes follow NVIDIA's Xid catalog ("Analyzing Xid Errors with the Xid Catalog",
docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html), by its resolution bucket: an
event whose remedy is a GPU reset, a node reboot or support (hardware) is *fatal*; one that
asks for a reset to activate a remap or signals a rising error rate is *degraded*; one whose
remedy is restarting the application (a program's own fault) is *informational*.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "XID_CLASSES",
    "AscendHealth",
    "Condition",
    "FakeHealth",
    "HealthSource",
    "Kind",
    "NvmlHealth",
    "Severity",
    "UnknownHealth",
    "health_source",
    "xid_condition",
]


class Severity(StrEnum):
    FATAL = "fatal"  # the card cannot be trusted: move the work off
    DEGRADED = "degraded"  # it works, worse: no new work
    INFO = "info"  # worth recording, nothing to do
    UNKNOWN = "unknown"  # no way to tell on this node


class Kind(StrEnum):
    XID = "xid"
    ECC_UNCORRECTABLE = "ecc-uncorrectable"
    ROW_REMAP_FAILURE = "row-remap-failure"
    RETIRED_PAGES_PENDING = "retired-pages-pending"
    THERMAL_THROTTLE = "thermal-throttle"
    POWER_THROTTLE = "power-throttle"
    NVLINK_ERRORS = "nvlink-errors"
    PCIE_DEGRADED = "pcie-degraded"
    CARD_MISSING = "card-missing"
    NPU_UNHEALTHY = "npu-unhealthy"
    HEALTH_UNKNOWN = "health-unknown"
    # found by the control plane's pre-flight of a gang (baige.control.preflight_gate), not
    # by a node's own checks: the node was far below its peers in compute or collectives
    PREFLIGHT_FAILED = "preflight-failed"


# the severity each kind has unless the policy says otherwise
DEFAULT_SEVERITY: dict[Kind, Severity] = {
    Kind.ECC_UNCORRECTABLE: Severity.FATAL,
    Kind.ROW_REMAP_FAILURE: Severity.FATAL,
    Kind.RETIRED_PAGES_PENDING: Severity.DEGRADED,
    Kind.THERMAL_THROTTLE: Severity.DEGRADED,
    Kind.POWER_THROTTLE: Severity.INFO,
    Kind.NVLINK_ERRORS: Severity.DEGRADED,
    Kind.PCIE_DEGRADED: Severity.DEGRADED,
    Kind.CARD_MISSING: Severity.FATAL,
    Kind.NPU_UNHEALTHY: Severity.FATAL,
    Kind.HEALTH_UNKNOWN: Severity.UNKNOWN,
    Kind.PREFLIGHT_FAILED: Severity.DEGRADED,
}

# XID code -> (severity, what it is); codes not listed are informational
XID_CLASSES: dict[int, tuple[Severity, str]] = {
    13: (Severity.INFO, "graphics engine exception (usually the application)"),
    31: (Severity.INFO, "GPU memory page fault (usually the application)"),
    43: (Severity.INFO, "GPU stopped processing (usually the application)"),
    45: (Severity.INFO, "preemptive cleanup after an application was stopped"),
    48: (Severity.FATAL, "double-bit ECC error"),
    61: (Severity.FATAL, "internal micro-controller breakpoint"),
    62: (Severity.FATAL, "internal micro-controller halt"),
    63: (Severity.DEGRADED, "ECC page retirement or row remap recorded; reset to activate"),
    64: (Severity.FATAL, "ECC page retirement or row remap failed"),
    74: (Severity.FATAL, "NVLink error"),
    79: (Severity.FATAL, "GPU has fallen off the bus"),
    92: (Severity.DEGRADED, "high single-bit ECC error rate"),
    94: (Severity.DEGRADED, "contained ECC error (the application was stopped)"),
    95: (Severity.FATAL, "uncontained ECC error"),
    119: (Severity.FATAL, "GSP RPC timeout"),
    120: (Severity.FATAL, "GSP error"),
    140: (Severity.FATAL, "unrecovered ECC error"),
}


@dataclass(frozen=True, slots=True)
class Condition:
    """One thing wrong with one card (``device`` -1: the node as a whole)."""

    kind: Kind
    severity: Severity
    device: int
    reason: str
    code: int | None = None  # an XID, an error code

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"], data["severity"] = self.kind.value, self.severity.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Condition:
        """A condition from its JSON form; a ``ValueError`` names what is wrong."""
        try:
            kind = Kind(data["kind"])
            code = data.get("code")
            severity = Severity(data.get("severity") or _severity(kind, code))
            return cls(kind, severity, int(data.get("device", -1)), str(data.get("reason", "")),
                       None if code is None else int(code))  # fmt: skip
        except KeyError as err:
            raise ValueError(f"a condition needs {err.args[0]!r}") from None
        except (TypeError, ValueError) as err:
            raise ValueError(f"bad condition {data!r}: {err}") from None


def _severity(kind: Kind, code: int | None) -> Severity:
    if kind is Kind.XID:
        return XID_CLASSES.get(code or 0, (Severity.INFO, ""))[0]
    return DEFAULT_SEVERITY[kind]


def xid_condition(device: int, code: int) -> Condition:
    """An XID event on ``device``, classified by NVIDIA's catalog (see the module doc)."""
    severity, what = XID_CLASSES.get(code, (Severity.INFO, "not in Baige's table"))
    return Condition(Kind.XID, severity, device, f"XID {code}: {what}", code)


class HealthSource(Protocol):
    """What a node agent asks every few seconds."""

    name: str

    def check(self) -> list[Condition]: ...


class UnknownHealth:
    """A vendor whose tools expose no health here: said once per check, never 'healthy'."""

    def __init__(self, vendor: str) -> None:
        self.name = f"{vendor} (no health source)"
        self.vendor = vendor

    def check(self) -> list[Condition]:
        reason = f"no health source for {self.vendor} cards on this node"
        return [Condition(Kind.HEALTH_UNKNOWN, Severity.UNKNOWN, -1, reason)]


class FakeHealth:
    """Declared fake: the conditions listed in a JSON file (``{"conditions": [...]}``), as if
    the node's fake cards had raised them. ``baige fault inject`` and tests write the file;
    a missing file is a healthy node.

    The file may also say ``"slow_compute": F`` (``baige fault slow``): the node's fake cards
    raise no condition, yet the control plane's pre-flight finds them F times slower — a card
    degraded in a way its own checks do not see, the case a pre-flight exists for."""

    name = "fake"

    def __init__(self, path: Path) -> None:
        self.path = path

    def _data(self) -> dict[str, Any]:
        """The file's object; ``{}`` when it is missing. Raises ``OSError``/``ValueError``."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data

    def check(self) -> list[Condition]:
        try:
            data = self._data()
        except (OSError, ValueError) as err:
            reason = f"cannot read the fake health file {self.path}: {err}"
            return [Condition(Kind.HEALTH_UNKNOWN, Severity.UNKNOWN, -1, reason)]
        items = data.get("conditions", [])
        out: list[Condition] = []
        for item in items if isinstance(items, list) else []:
            try:
                out.append(Condition.from_json(item))
            except ValueError as err:
                out.append(Condition(Kind.HEALTH_UNKNOWN, Severity.UNKNOWN, -1, str(err)))
        return out

    def slow_compute(self) -> float:
        """How many times slower the fake cards compute (1: not slowed; unreadable: 1)."""
        try:
            value = float(self._data().get("slow_compute", 1.0))
        except (OSError, ValueError, TypeError):
            return 1.0
        return value if 1.0 <= value <= 1000.0 else 1.0

    def inject(self, condition: Condition) -> None:
        """Add a condition (atomically: a reader never sees half a file)."""
        current = [c.to_json() for c in self.check() if c.kind is not Kind.HEALTH_UNKNOWN]
        self._write([*current, condition.to_json()], self.slow_compute())

    def slow(self, factor: float) -> None:
        """Make the fake cards ``factor`` times slower (1: as fast as their peers again)."""
        if not 1.0 <= factor <= 1000.0:
            raise ValueError(f"slow-down factor {factor:g}: expected 1 to 1000")
        current = [c.to_json() for c in self.check() if c.kind is not Kind.HEALTH_UNKNOWN]
        self._write(current, factor)

    def clear(self, device: int | None = None) -> None:
        """Heal every card (and their speed), or one."""
        kept = [c.to_json() for c in self.check() if device is not None and c.device != device]
        self._write(kept, 1.0 if device is None else self.slow_compute())

    def _write(self, conditions: Sequence[dict[str, Any]], slow_compute: float = 1.0) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {"conditions": list(conditions)}
        if slow_compute != 1.0:
            data["slow_compute"] = slow_compute
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path)


class NvmlHealth:
    """NVIDIA cards through NVML (``nvidia-ml-py``). Counters are compared with the first
    reading, so a card reports what happened since the agent started, not its whole life."""

    name = "nvml"

    def __init__(self, registered: int) -> None:
        import pynvml  # type: ignore[import-not-found]  # noqa: PLC0415

        self.nvml: Any = pynvml
        pynvml.nvmlInit()
        self.registered = registered
        self.events: Any = pynvml.nvmlEventSetCreate()
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            # not supported on some cards: their XIDs are then not seen here
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlDeviceRegisterEvents(handle, pynvml.nvmlEventTypeXidCriticalError,
                                                self.events)  # fmt: skip
        self.seen_xids: list[Condition] = []

    def check(self) -> list[Condition]:
        nvml = self.nvml
        out: list[Condition] = []
        count = nvml.nvmlDeviceGetCount()
        if count < self.registered:
            seen = f"{count} cards visible, {self.registered} registered"
            out.append(Condition(Kind.CARD_MISSING, Severity.FATAL, -1, seen))
        while True:
            try:
                event = nvml.nvmlEventSetWait_v2(self.events, 0)
            except nvml.NVMLError:
                break
            index = nvml.nvmlDeviceGetIndex(event.device)
            self.seen_xids.append(xid_condition(index, int(event.eventData)))
        out += self.seen_xids
        for index in range(count):
            out += self._device(index, nvml.nvmlDeviceGetHandleByIndex(index))
        return out

    def _device(self, index: int, handle: Any) -> list[Condition]:
        nvml = self.nvml
        out: list[Condition] = []

        def read(fn: str, *args: Any) -> Any:
            try:
                return getattr(nvml, fn)(handle, *args)
            except nvml.NVMLError:
                return None

        ecc = read("nvmlDeviceGetTotalEccErrors", nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                   nvml.NVML_VOLATILE_ECC)  # fmt: skip
        if ecc:
            out.append(Condition(Kind.ECC_UNCORRECTABLE, Severity.FATAL, index,
                                 f"{ecc} volatile uncorrectable ECC errors"))  # fmt: skip
        remap = read("nvmlDeviceGetRemappedRows")
        if remap is not None:
            _corr, _unc, pending, failure = remap
            if failure:
                out.append(Condition(Kind.ROW_REMAP_FAILURE, Severity.FATAL, index,
                                     "row remapping failed"))  # fmt: skip
            elif pending:
                out.append(Condition(Kind.RETIRED_PAGES_PENDING, Severity.DEGRADED, index,
                                     "remapped rows pending a reset"))  # fmt: skip
        reasons = read("nvmlDeviceGetCurrentClocksEventReasons") or 0
        thermal = getattr(nvml, "nvmlClocksEventReasonHwThermalSlowdown", 0x40)
        power = getattr(nvml, "nvmlClocksEventReasonHwPowerBrakeSlowdown", 0x80)
        if reasons & thermal:
            out.append(Condition(Kind.THERMAL_THROTTLE, Severity.DEGRADED, index,
                                 "hardware thermal slowdown"))  # fmt: skip
        if reasons & power:
            out.append(Condition(Kind.POWER_THROTTLE, Severity.INFO, index,
                                 "hardware power-brake slowdown"))  # fmt: skip
        width, top_width = (
            read("nvmlDeviceGetCurrPcieLinkWidth"),
            read("nvmlDeviceGetMaxPcieLinkWidth"),
        )
        gen, top_gen = (
            read("nvmlDeviceGetCurrPcieLinkGeneration"),
            read("nvmlDeviceGetMaxPcieLinkGeneration"),
        )
        if (width and top_width and width < top_width) or (gen and top_gen and gen < top_gen):
            link = f"PCIe x{width} gen{gen}, max x{top_width} gen{top_gen}"
            out.append(Condition(Kind.PCIE_DEGRADED, Severity.DEGRADED, index, link))
        return out


class AscendHealth:
    """Ascend NPUs through ``npu-smi info -t health -i N``: a card whose health is not OK."""

    name = "npu-smi"

    def __init__(self, devices: int, timeout: float = 5.0) -> None:
        self.devices = devices
        self.timeout = timeout

    def check(self) -> list[Condition]:
        out: list[Condition] = []
        for index in range(self.devices):
            try:
                text = subprocess.run(
                    ["npu-smi", "info", "-t", "health", "-i", str(index)],
                    capture_output=True, text=True, timeout=self.timeout, check=False,
                ).stdout  # fmt: skip
            except (OSError, subprocess.TimeoutExpired) as err:
                out.append(Condition(Kind.HEALTH_UNKNOWN, Severity.UNKNOWN, index, str(err)))
                continue
            out += parse_npu_health(index, text)
        return out


def parse_npu_health(index: int, text: str) -> list[Condition]:
    """``npu-smi info -t health`` output: ``Health Status : OK|Warning|Alarm|Critical`` and
    an ``Error Code`` line (hex, or NA)."""
    status, code = "", None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "health status":
            status = value
        elif key.startswith("error code") and value and value.upper() != "NA":
            try:
                code = int(value.split()[0], 16)
            except ValueError:
                code = None
    if not status:
        return [Condition(Kind.HEALTH_UNKNOWN, Severity.UNKNOWN, index, "no health status")]
    if status.upper() == "OK":
        return []
    severity = Severity.DEGRADED if status.lower() == "warning" else Severity.FATAL
    reason = f"npu-smi health {status}" + (f", error code {code:#x}" if code else "")
    return [Condition(Kind.NPU_UNHEALTHY, severity, index, reason, code)]


def health_source(vendor: str, devices: int, fake_file: Path | None) -> HealthSource:
    """The health source for a node's cards: the fake one where they are fake."""
    if fake_file is not None:
        return FakeHealth(fake_file)
    if vendor == "nvidia":
        try:
            return NvmlHealth(devices)
        except Exception:  # no nvidia-ml-py, no driver: say so rather than guess
            return UnknownHealth("nvidia")
    if vendor == "ascend" and shutil.which("npu-smi"):
        return AscendHealth(devices)
    return UnknownHealth(vendor or "unknown")
