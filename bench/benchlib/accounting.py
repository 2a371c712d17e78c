"""CPU time, memory and open files of one process, read from /proc, so other load on the
machine does not count."""

from __future__ import annotations

import os
import threading
import time


class ProcessAccounting:
    """Reads /proc/<pid>/stat, /proc/<pid>/status and /proc/<pid>/fd."""

    CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        """User plus system time of all threads, in steps of 1/CLK_TCK (10 ms here)."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state), so utime (field 14) and stime (15) are at 11 and 12.
        return (int(fields[11]) + int(fields[12])) / self.CLOCK_TICKS

    def memory_kib(self) -> dict:
        """VmRSS, VmHWM (peak RSS) and Threads."""
        values = {}
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    values[key] = int(rest.split()[0])
        return values

    def open_files(self) -> int:
        """Open file descriptors; nearly all of the operator's are TCP connections."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))


class Sampler(threading.Thread):
    """Samples CPU seconds, memory and open files every second until stopped."""

    def __init__(self, accounting: ProcessAccounting, clock0: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.accounting = accounting
        self.clock0 = clock0
        self.samples: list[dict] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(1.0):
            try:
                sample = {"t": time.monotonic() - self.clock0,
                          "cpu_s": self.accounting.cpu_seconds(),
                          "fds": self.accounting.open_files()}
                sample.update(self.accounting.memory_kib())
            except (OSError, ValueError, IndexError):
                return  # The process has exited.
            self.samples.append(sample)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)

    def max_between(self, key: str, start: float, end: float) -> int | None:
        inside = [s[key] for s in self.samples if start <= s["t"] <= end and key in s]
        return max(inside) if inside else None
