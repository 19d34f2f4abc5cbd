"""The machine a benchmark ran on, for the header of its table (tables must be comparable across commits)."""

from __future__ import annotations

import os
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


def process_tree_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and every live descendant (grain workers),
    from /proc (Linux); this process alone (os.times) elsewhere."""
    try:
        parents, used = {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended while we looked
            parents[int(entry)] = int(fields[1])
            used[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        tree, frontier = {os.getpid()}, [os.getpid()]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
            tree.update(children)
            frontier.extend(children)
        return sum(used.get(pid, 0.0) for pid in tree)
    except OSError:
        times = os.times()
        return times.user + times.system
