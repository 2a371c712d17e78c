"""The benchmark's own control plane, a small JSON client of its API server, and a watch
that records when each SklmRestore status change arrived."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

from .common import REPO, BenchError, log

# The benchmark's own control plane. The shared one that tests use runs on the script's
# default directory and ports, which these defaults keep clear of; the same environment
# variables as for hack/control-plane.sh move them.
CONTROL_PLANE_ENV = {
    name: os.environ.get(name, default)
    for name, default in (
        ("SKLM_CP_DIR", str(REPO / "target/bench-cp")),
        ("SKLM_ETCD_PORT", "24790"),
        ("SKLM_APISERVER_PORT", "17443"),
    )
}

GROUP_PATH = "/apis/sklm.dev/v1alpha1"


class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager through hack/control-plane.sh."""

    def __init__(self) -> None:
        self.env = {**os.environ, **CONTROL_PLANE_ENV}
        self.kubeconfig = Path(CONTROL_PLANE_ENV["SKLM_CP_DIR"]) / "kubeconfig"

    def _script(self, action: str) -> str:
        result = subprocess.run(
            [str(REPO / "hack/control-plane.sh"), action],
            env=self.env, capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0:
            raise BenchError(f"hack/control-plane.sh {action} failed:\n{result.stderr}")
        return result.stdout

    def up(self) -> None:
        # `down` first, because it deletes the etcd data: every run starts from an empty
        # store.
        self._script("down")
        self._script("up")

    def down(self) -> None:
        self._script("down")

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        result = subprocess.run(["kubectl", *args], env=env, input=stdin, capture_output=True,
                                text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise BenchError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout


class KubeApi:
    """JSON client of the benchmark's API server with one kept-alive connection per
    thread, configured from the kubeconfig that hack/control-plane.sh wrote."""

    def __init__(self, control_plane: ControlPlane) -> None:
        config = json.loads(control_plane.kubectl("config", "view", "--raw", "--minify",
                                                  "-o", "json"))
        cluster = config["clusters"][0]["cluster"]
        server = cluster["server"]
        self.host, port = server.removeprefix("https://").rsplit(":", 1)
        self.port = int(port)
        if self.host not in ("127.0.0.1", "localhost"):
            raise BenchError(f"the benchmark API server must be on loopback, not {server}")
        self.token = config["users"][0]["user"]["token"]
        self.tls = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self._local = threading.local()

    def connect(self, timeout: float | None = 60) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.tls,
                                           timeout=timeout)

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def request(self, method: str, path: str, body: dict | None = None,
                accept: tuple[int, ...] = (200, 201)) -> dict:
        headers = self.headers()
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        for attempt in (1, 2):
            connection = getattr(self._local, "connection", None) or self.connect()
            self._local.connection = connection
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, OSError):
                # The server closed a kept-alive connection; retry once on a new one.
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
        if response.status not in accept:
            raise BenchError(f"{method} {path} returned {response.status}: "
                             f"{payload[:400].decode(errors='replace')}")
        return json.loads(payload) if payload else {}

    def list_resource_versions(self) -> tuple[str, dict[str, str]]:
        """Returns the list's resourceVersion and each SklmRestore's, by namespace/name."""
        listing = self.request("GET", f"{GROUP_PATH}/sklmrestores")
        versions = {f"{o['metadata']['namespace']}/{o['metadata']['name']}":
                    o["metadata"]["resourceVersion"] for o in listing["items"]}
        return listing["metadata"]["resourceVersion"], versions


def namespace_manifest(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def secret_manifest(name: str, string_data: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "type": "Opaque", "stringData": string_data}


def restore_manifest(name: str, api_url: str, poll_interval: int, credentials_secret: str,
                     ca_secret: str) -> dict:
    return {
        "apiVersion": "sklm.dev/v1alpha1",
        "kind": "SklmRestore",
        "metadata": {"name": name},
        "spec": {
            "server": {"url": api_url, "caSecretRef": {"name": ca_secret, "key": "ca.crt"}},
            "credentialsSecretRef": {"name": credentials_secret},
            "pollIntervalSeconds": poll_interval,
        },
    }


class StatusWatch(threading.Thread):
    """Watches every SklmRestore and records when each status event arrived.

    `changes[key]` lists (arrival, resourceVersion, phase, restorePhase) for each event
    whose object has a status phase, in arrival order, and `first_status[key]` is the
    arrival of the first one. Arrival times are seconds on the benchmark clock.
    """

    MAX_RECONNECTS = 20

    def __init__(self, api: KubeApi, resource_version: str, clock0: float) -> None:
        super().__init__(name="status-watch", daemon=True)
        self.api = api
        self.resource_version = resource_version
        self.clock0 = clock0
        self.lock = threading.Lock()
        self.changes: dict[str, list[tuple[float, str, str | None, str | None]]] = {}
        self.first_status: dict[str, float] = {}
        self.event_times: list[float] = []
        self._done = threading.Event()
        self._connection: http.client.HTTPSConnection | None = None

    def run(self) -> None:
        for _ in range(self.MAX_RECONNECTS):
            if self._done.is_set():
                return
            try:
                self._watch_once()
            except (OSError, http.client.HTTPException, ValueError) as error:
                if self._done.is_set():
                    return
                log(f"status watch failed: {error}; watching again from resourceVersion "
                    f"{self.resource_version}")
            self._done.wait(0.5)
        log(f"status watch stopped after {self.MAX_RECONNECTS} reconnects")

    def _watch_once(self) -> None:
        path = (f"{GROUP_PATH}/sklmrestores?watch=1&allowWatchBookmarks=true"
                f"&timeoutSeconds=3000&resourceVersion={self.resource_version}")
        # No socket timeout: `stop` ends a blocked read by shutting the socket down.
        self._connection = self.api.connect(timeout=None)
        self._connection.request("GET", path, headers=self.api.headers())
        response = self._connection.getresponse()
        if response.status != 200:
            raise ValueError(f"watch returned HTTP {response.status}")
        while True:
            line = response.readline()
            if not line:
                return
            self._record(json.loads(line), time.monotonic() - self.clock0)

    def _record(self, event: dict, arrived: float) -> None:
        kind = event.get("type")
        body = event.get("object", {})
        metadata = body.get("metadata", {})
        if kind == "ERROR":
            raise ValueError(f"watch error event: {body.get('message')}")
        if "resourceVersion" in metadata:
            self.resource_version = metadata["resourceVersion"]
        if kind not in ("ADDED", "MODIFIED"):
            return
        status = body.get("status") or {}
        if not status.get("phase"):
            return
        key = f"{metadata['namespace']}/{metadata['name']}"
        with self.lock:
            self.event_times.append(arrived)
            self.changes.setdefault(key, []).append(
                (arrived, metadata["resourceVersion"], status.get("phase"),
                 status.get("restorePhase")))
            self.first_status.setdefault(key, arrived)

    def first_time_of(self, key: str, restore_phase: str, after: float) -> float | None:
        """Arrival of the first event at or after `after` showing `restore_phase`."""
        with self.lock:
            for arrived, _, _, seen in self.changes.get(key, []):
                if arrived >= after and seen == restore_phase:
                    return arrived
        return None

    def events_between(self, start: float, end: float) -> int:
        with self.lock:
            return sum(1 for t in self.event_times if start <= t < end)

    def stop(self) -> None:
        self._done.set()
        connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        self.join(timeout=5)
