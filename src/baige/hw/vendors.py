"""Accelerator vendors and how each one is told which devices a process may use.

The local backend isolates replicas by setting the vendor's visibility variable, so this
table is the single place that knows them. Each entry names the document that says the
runtime honours the variable, because a wrong name fails silently: the process simply sees
every card on the node.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VENDORS", "Vendor", "get_vendor"]


@dataclass(frozen=True, slots=True)
class Vendor:
    """A maker of accelerators and the environment variable that selects its devices."""

    key: str
    name: str
    visibility_env: str
    source: str


VENDORS: dict[str, Vendor] = {
    v.key: v
    for v in (
        Vendor(
            "nvidia",
            "NVIDIA",
            "CUDA_VISIBLE_DEVICES",
            "CUDA C++ Programming Guide, 'CUDA Environment Variables' "
            "(https://docs.nvidia.com/cuda/cuda-c-programming-guide/#env-vars)",
        ),
        Vendor(
            "huawei",
            "Huawei Ascend",
            "ASCEND_RT_VISIBLE_DEVICES",
            "CANN environment variable reference, ASCEND_RT_VISIBLE_DEVICES "
            "(https://www.hiascend.com/document/detail/en/canncommercial/800/apiref/envvar/"
            "envref_07_0028.html)",
        ),
        Vendor(
            "kunlunxin",
            "Kunlunxin (Baidu Kunlun)",
            "XPU_VISIBLE_DEVICES",
            "PaddlePaddle's XPU runtime reads XPU_VISIBLE_DEVICES to count visible devices "
            "(PaddlePaddle/Paddle paddle/fluid/platform/device/xpu/xpu_info.cc; "
            "PaddlePaddle/docs xpu_places_cn.rst)",
        ),
        Vendor(
            "hygon",
            "Hygon DCU",
            "HIP_VISIBLE_DEVICES",
            "DTK is Hygon's HIP-based toolkit; GPUStack maps its dtk backend to "
            "HIP_VISIBLE_DEVICES (github.com/gpustack/runner, gpustack_runner/__init__.py)",
        ),
        Vendor(
            "intel",
            "Intel Gaudi",
            "HABANA_VISIBLE_MODULES",
            "Intel Gaudi documentation, 'Multiple Workloads on a Single Docker' "
            "(https://docs.habana.ai/en/latest/Orchestration/Multiple_Tenants_on_HPU/"
            "Multiple_Workloads_Single_Docker.html); module IDs, unlike the indices in "
            "HABANA_VISIBLE_DEVICES, survive reboots and driver reinstalls",
        ),
        Vendor(
            "amd",
            "AMD Instinct",
            "ROCR_VISIBLE_DEVICES",
            "ROCm documentation, 'GPU isolation techniques' "
            "(https://rocm.docs.amd.com/en/docs-6.1.2/conceptual/gpu-isolation.html) and "
            "'HIP environment variables' (https://rocm.docs.amd.com/projects/HIP/en/latest/"
            "reference/env_variables.html): ROCR_VISIBLE_DEVICES applies to every ROCm "
            "user-mode application and is the one recommended on Linux; HIP_VISIBLE_DEVICES "
            "reaches HIP programs only",
        ),
    )
}


def get_vendor(key: str) -> Vendor:
    """The vendor called ``key``; a ``KeyError`` names the known vendors otherwise."""
    try:
        return VENDORS[key]
    except KeyError:
        raise KeyError(f"unknown vendor {key!r}; known: {', '.join(sorted(VENDORS))}") from None
