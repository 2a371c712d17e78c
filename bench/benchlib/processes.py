"""The processes under test: `sklm-sim` key servers and the operator."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import subprocess
import time
from pathlib import Path

from .accounting import ProcessAccounting
from .common import BenchError, wait_until

# Path of the request that maps a simulator's clock to the benchmark's. The simulator
# returns 404 and logs it like any other request, so request counts skip this path.
CLOCK_PROBE_PATH = "/bench-clock-probe"


class Simulator:
    """One `sklm-sim` process with its own generated CA, on loopback ports it picks."""

    def __init__(self, binary: Path, index: int, workdir: Path, user: str,
                 password: str) -> None:
        self.index = index
        self.dir = workdir / f"sim-{index:02d}"
        self.dir.mkdir(parents=True)
        self.ready_file = self.dir / "ready.json"
        self.ca_file = self.dir / "ca.pem"
        self.api_addr = ""
        self.control_addr = ""
        # Seconds to add to a logged `elapsed_ms / 1000` to get the benchmark clock.
        self.clock_offset = 0.0
        with open(self.dir / "sim.log", "wb") as sim_log:
            self.process = subprocess.Popen(
                [str(binary), "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
                 "--user", f"{user}:{password}",
                 "--ready-file", str(self.ready_file), "--ca-out", str(self.ca_file)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sim_log,
                env={**os.environ, "RUST_LOG": "warn"})

    @property
    def api_url(self) -> str:
        return f"https://{self.api_addr}"

    def wait_ready(self, deadline: float) -> None:
        def ready():
            if self.process.poll() is not None:
                raise BenchError(f"simulator {self.index} exited with "
                                 f"{self.process.returncode}; see {self.dir / 'sim.log'}")
            return self.ready_file.exists()
        wait_until(f"simulator {self.index} to write {self.ready_file}", deadline, ready, 0.05)
        info = json.loads(self.ready_file.read_text())
        self.api_addr = info["api"]
        self.control_addr = info["control"]

    def control(self, method: str, path: str, body: dict | None = None):
        """Calls the plain-HTTP control endpoint and returns the decoded JSON body."""
        host, port = self.control_addr.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            data = json.dumps(body) if body is not None else None
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        if response.status >= 300:
            raise BenchError(f"simulator {self.index}: {method} {path} returned "
                             f"{response.status}: {payload[:300].decode(errors='replace')}")
        return json.loads(payload)

    def requests_total(self) -> int:
        """Sequence number of the last logged REST request."""
        return self.control("GET", "/state")["requests_total"]

    def probe_clock(self, clock0: float) -> None:
        """Sends one request to the REST port and sets `clock_offset` from its logged
        arrival, taken as the middle of the round trip."""
        host, port = self.api_addr.rsplit(":", 1)
        context = ssl.create_default_context(cafile=str(self.ca_file))
        connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
        try:
            connection.connect()  # Keeps the TLS handshake out of the timed round trip.
            sent = time.monotonic() - clock0
            connection.request("GET", CLOCK_PROBE_PATH)
            connection.getresponse().read()
            received = time.monotonic() - clock0
        finally:
            connection.close()
        probes = [r for r in self.control("GET", "/requests") if r["path"] == CLOCK_PROBE_PATH]
        if not probes:
            raise BenchError(f"simulator {self.index} did not log the clock probe")
        self.clock_offset = (sent + received) / 2 - probes[-1]["elapsed_ms"] / 1000


class Operator:
    """The operator binary watching all namespaces, logging JSON to a file."""

    def __init__(self, binary: Path, kubeconfig: Path, log_path: Path, clock0: float) -> None:
        self.binary = binary
        self.log_path = log_path
        with open(log_path, "wb") as operator_log:
            self.started_at = time.monotonic() - clock0
            self.process = subprocess.Popen(
                [str(binary), "run", "--http-addr", "127.0.0.1:0", "--log-format", "json"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=operator_log,
                env={**os.environ, "KUBECONFIG": str(kubeconfig), "RUST_LOG": "info"})
        self.accounting = ProcessAccounting(self.process.pid)
        self.metrics_addr = ""

    def wait_for_addr(self, deadline: float) -> None:
        """Waits for the `starting` log line, which carries the /metrics address."""
        def started():
            if self.process.poll() is not None:
                raise BenchError(f"operator exited with {self.process.returncode}; "
                                 f"see {self.log_path}")
            for entry in self.log_entries():
                if entry.get("message") == "starting" and "addr" in entry:
                    return entry["addr"]
            return None
        self.metrics_addr = wait_until("the operator's 'starting' log line", deadline, started)

    def log_entries(self) -> list[dict]:
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                entries.append({"level": "UNPARSED", "message": line})
        return entries

    def metrics(self) -> dict[str, float]:
        """Fetches `/metrics` and returns its samples, keyed by name and labels as written."""
        host, port = self.metrics_addr.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            connection.request("GET", "/metrics")
            text = connection.getresponse().read().decode()
        finally:
            connection.close()
        values = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            try:
                values[key] = float(value)
            except ValueError:
                continue
        return values

    def identity(self) -> dict:
        """Returns the version output and SHA-256 of the binary, so that results name the
        build they measured."""
        version = subprocess.run([str(self.binary), "--version"], capture_output=True,
                                 text=True, timeout=30, check=False).stdout.strip()
        digest = hashlib.sha256(self.binary.read_bytes()).hexdigest()
        return {"path": str(self.binary), "version": version, "sha256": digest}


def metric_sum(values: dict[str, float], name: str) -> float:
    """Sum of a metric over all its label sets."""
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))
