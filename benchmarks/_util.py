"""Helpers shared by the benchmark scripts: timing, peak memory of a child process, machine info."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime


def machine() -> str:
    """A one-line description of this machine."""
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, {platform.machine()}, Python {platform.python_version()}"


def run_child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh Python process; returns its JSON output plus wall time and peak RSS.

    The child prints one JSON object on its last stdout line. Peak RSS is the
    child's maximum resident set size (``getrusage(RUSAGE_CHILDREN)``), measured
    in a fresh process so earlier work in this one does not count.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(wall, 2)
    result["peak_rss_gib"] = round(max(peak_kib, before) / 2**20, 2) if peak_kib > before else None
    return result


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def load_average() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


class PeakRSS:
    """Peak resident memory (GiB) of this process and its children while it is running."""

    def __init__(self) -> None:
        import psutil

        self._proc, self.peak, self._stop = psutil.Process(), 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _rss(self) -> float:
        import psutil

        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a child that just ended
                total += p.memory_info().rss
        return total / 2**30

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self._rss())

    def start(self) -> PeakRSS:
        self.peak = self._rss()
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak
