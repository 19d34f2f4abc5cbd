"""The machine a benchmark ran on, for the header of its table (tables must be comparable across commits)."""

from __future__ import annotations

import platform


def cpu_model_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
