"""Where the machine's CPU time goes during a benchmark run, by kind of process.

``snapshot()`` reads every process's user and system time from ``/proc/<pid>/stat`` and the
machine's busy and idle time from ``/proc/stat``; ``per_request(before, after, requests)`` turns
two snapshots into microseconds of CPU per request for each kind:

- ``app``: gunicorn's processes (the web workers), ``worker``: the Huey consumer;
- ``nginx``, ``postgres``, ``redis``, ``wrk``: the servers and the load generator;
- ``other``: everything else that ran; ``busy``: the whole machine (from ``/proc/stat``, so it
  includes interrupts and processes that came and went), and ``idle_share``: the part of the
  machine's time that nobody used.

On a machine whose cores are all busy, throughput is (cores x 1 s) / busy CPU per request, so
the ratio of two scenarios' throughputs is the inverse ratio of their CPU per request, and the
kinds show which process each scenario's extra cost lands in.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
KINDS = ("app", "worker", "nginx", "postgres", "redis", "wrk", "other")


def _kind(pid: str, comm: str) -> str:
    if comm.startswith("nginx"):
        return "nginx"
    if comm.startswith("postgres") or comm.startswith("postmaster"):
        return "postgres"
    if comm.startswith("redis-server"):
        return "redis"
    if comm == "wrk":
        return "wrk"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return "other"
    if b"gunicorn" in command:
        return "app"
    if b"huey" in command or b"ecommerce.worker" in command:
        return "worker"
    return "other"


def snapshot() -> dict[str, dict]:
    """CPU seconds so far: per process (pid -> (kind, seconds)) and the machine's busy and idle."""
    processes: dict[str, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue  # ended meanwhile
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
        processes[entry.name] = (_kind(entry.name, comm), seconds)
    cpu = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = (cpu[3] + cpu[4]) / TICKS  # idle, iowait
    busy = (sum(cpu[:8]) / TICKS) - idle  # user..steal, without guest (counted in user)
    return {"processes": processes, "machine": {"busy": busy, "idle": idle}}


def children_seconds() -> float:
    """CPU seconds of this process's waited-for children so far (wrk: it has ended before the
    second snapshot, so /proc no longer shows it)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def per_request(before: dict, after: dict, requests: float, wrk_seconds: float = 0.0) -> dict[str, float]:
    """Microseconds of CPU per request for each kind between two snapshots (``wrk_seconds``: the
    load generator's own, from ``children_seconds``)."""
    spent = dict.fromkeys(KINDS, 0.0)
    spent["wrk"] = wrk_seconds
    for pid, (kind, seconds) in after["processes"].items():
        earlier = before["processes"].get(pid)
        spent[kind] += seconds - (earlier[1] if earlier else 0.0)
    requests = max(requests, 1.0)
    result = {kind: spent[kind] / requests * 1e6 for kind in KINDS}
    busy = after["machine"]["busy"] - before["machine"]["busy"]
    idle = after["machine"]["idle"] - before["machine"]["idle"]
    result["busy"] = busy / requests * 1e6
    result["idle_share"] = idle / (busy + idle) if busy + idle else 0.0
    return result
