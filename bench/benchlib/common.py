"""Logging, bounded waits, percentiles and the cleanup stack shared by the benchmark."""

from __future__ import annotations

import datetime
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


class BenchError(Exception):
    """A step of the benchmark failed; the message names the step and the cause."""


class BenchTimeout(BenchError):
    """The whole run went over its time limit."""


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", file=sys.stderr, flush=True)


def wait_until(what: str, deadline: float, check, pause: float = 0.2):
    """Calls `check` until it returns a true value, which it returns; raises BenchError
    when time.monotonic() passes `deadline`."""
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(pause)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for an empty list."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def summarize(values: list[float]) -> dict:
    return {
        "count": len(values),
        "p50": percentile(values, 0.50),
        "p90": percentile(values, 0.90),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else None,
        "mean": statistics.fmean(values) if values else None,
    }


class Cleanup:
    """Stack of undo actions, run in reverse order exactly once."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, object]] = []

    def push(self, what: str, action) -> None:
        self._actions.append((what, action))

    def run(self) -> None:
        while self._actions:
            what, action = self._actions.pop()
            try:
                action()
            except Exception as error:  # noqa: BLE001 - every undo step must get its turn
                log(f"cleanup of {what} failed: {error}")


def stop_process(process: subprocess.Popen, name: str, grace: float = 10.0) -> bool:
    """Sends SIGTERM, waits up to `grace` seconds, then sends SIGKILL. Returns whether the
    process exited on SIGTERM."""
    if process.poll() is not None:
        return True
    process.terminate()
    try:
        process.wait(timeout=grace)
        return True
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {process.pid}) ignored SIGTERM for {grace:.0f} s; killing it")
        process.kill()
        process.wait(timeout=10)
        return False
