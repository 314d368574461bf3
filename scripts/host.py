"""This machine: the device and its memory (what the attention choice and the memory plan size against)
and the process's memory readings the benches report. Linux (``/proc``).

    from scripts.host import available_bytes, proc_status_kib, this_host
    kind, memory, name = this_host()        # ("gpu", 85899345920, "NVIDIA H100 80GB HBM3") or ("cpu", RAM, ...)
    proc_status_kib("VmHWM")                # this process's peak resident set, KiB
"""

from __future__ import annotations

from typing import Literal

Device = Literal["cpu", "gpu"]


def this_host() -> tuple[Device, int, str]:
    """``(device kind, memory bytes, description)``: GPU 0's total memory (CUDA or ROCm), else RAM."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return "gpu", props.total_memory, props.name
    with open("/proc/meminfo") as fh:
        total = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemTotal:"))
    return "cpu", total, "system memory"


def available_bytes() -> int:
    """Memory the system can give a new allocation without swapping (``MemAvailable``), bytes."""
    with open("/proc/meminfo") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))


def proc_status_kib(field: str) -> int:
    """One memory field of this process's ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ...), KiB."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))
