"""This machine's device and memory readings (scripts.host)."""

from __future__ import annotations

from scripts.host import available_bytes, proc_status_kib, this_host


def test_the_host_readings_are_this_machines():
    kind, memory, name = this_host()
    assert kind in ("cpu", "gpu") and memory > 0 and name
    assert 0 < available_bytes() <= memory or kind == "gpu"
    assert proc_status_kib("VmHWM") >= proc_status_kib("VmRSS") > 0
