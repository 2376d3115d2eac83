"""Run a command and measure it: wall time and the peak memory of its whole process tree."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

SAMPLE_INTERVAL_S = 0.1
TREE_REFRESH_S = 0.5
"""Listing a process's descendants scans /proc: done every 0.5 s, not at every sample (it cost a third of a core)."""


@dataclass
class Measured:
    """One measured command.

    ``peak_rss_bytes`` is the largest sum, over the process and all its descendants,
    of their resident set sizes (file pages of memory-mapped FITS included);
    ``peak_private_bytes`` the same for memory that is not file-backed (RSS minus
    shared), closer to what the processes cost the machine.
    """

    command: list[str]
    seconds: float
    returncode: int
    peak_rss_bytes: int
    peak_private_bytes: int
    peak_processes: int
    output: str = field(repr=False)
    watched_seconds: float | None = None
    """When the ``watch`` condition first held, in seconds since the command started (None: never)."""

    def result(self) -> dict:
        """The JSON object a workload prints as its last line (see ``workloads.py``); {} for other commands."""
        lines = self.output.strip().splitlines()
        return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}

    def summary(self) -> dict:
        """The numbers, without the output."""
        return {
            "seconds": round(self.seconds, 3),
            "returncode": self.returncode,
            "peak_rss_gb": round(self.peak_rss_bytes / 1e9, 3),
            "peak_private_gb": round(self.peak_private_bytes / 1e9, 3),
            "peak_processes": self.peak_processes,
        }


def tree_memory(processes: list[psutil.Process]) -> tuple[int, int, int]:
    """(RSS, private RSS, process count) summed over ``processes`` right now."""
    rss = private = count = 0
    for process in processes:
        try:
            info = process.memory_info()
        except psutil.Error:  # gone between listing and reading
            continue
        rss += info.rss
        private += info.rss - getattr(info, "shared", 0)
        count += 1
    return rss, private, count


def run_measured(
    command: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    watch: Callable[[], bool] | None = None,
) -> Measured:
    """Run ``command`` to its end, sampling its process tree's memory every 100 ms.

    ``watch``, when given, is checked at every sample until it first returns True (for
    example: the store holds its first time step); that moment is ``watched_seconds``.
    """
    peaks = [0, 0, 0]
    watched: list[float] = []
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    root = psutil.Process(process.pid)
    done = threading.Event()

    def sample() -> None:
        tree, listed = [root], 0.0
        while not done.is_set():
            try:
                if time.monotonic() - listed > TREE_REFRESH_S:
                    tree, listed = [root, *root.children(recursive=True)], time.monotonic()
                for i, value in enumerate(tree_memory(tree)):
                    peaks[i] = max(peaks[i], value)
            except psutil.Error:
                pass
            if watch is not None and not watched and watch():
                watched.append(time.perf_counter() - started)
            done.wait(SAMPLE_INTERVAL_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return Measured(
        command, seconds, process.returncode, peaks[0], peaks[1], peaks[2], output, watched[0] if watched else None
    )


def machine() -> dict:
    """Facts about the machine the numbers come from."""
    from ovro_ingest import __version__

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ovro_ingest": __version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def best_of(function: Callable[[], object], repeat: int = 3) -> float:
    """The shortest of ``repeat`` runs of ``function``, seconds (the least disturbed by the machine)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)
