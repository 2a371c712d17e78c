"""One benchmark run: setup in order, the measured windows, and the figures of each."""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .accounting import Sampler
from .common import BenchError, Cleanup, log, percentile, stop_process, summarize, wait_until
from .kube import (
    CONTROL_PLANE_ENV,
    GROUP_PATH,
    ControlPlane,
    KubeApi,
    StatusWatch,
    namespace_manifest,
    restore_manifest,
    secret_manifest,
)
from .processes import CLOCK_PROBE_PATH, Operator, Simulator, metric_sum

SKLM_USER = "benchadmin"
CREDENTIALS_SECRET = "sklm-admin"
CA_SECRET = "sim-ca"

# Phase names sent to the simulators' `PUT /phase`, and the `status.restorePhase` that
# shows each.
RESTORE_STEPS = [
    ("INITIALIZE", "Initialize"),
    ("RESTORE_DATABASES", "RestoreDatabases"),
    ("COMPLETED", "Completed"),
]


def namespace_of(server_index: int) -> str:
    return f"bench-s{server_index:02d}"


def sklm_requests(records: list[dict], after_seq: int, upto_seq: int) -> dict[str, int]:
    """Counts logged REST requests by endpoint for after_seq < seq <= upto_seq."""
    counts: dict[str, int] = {}
    for record in records:
        if not after_seq < record["seq"] <= upto_seq or record["path"] == CLOCK_PROBE_PATH:
            continue
        endpoint = record.get("endpoint") or "unknown"
        counts[endpoint] = counts.get(endpoint, 0) + 1
    return counts


def poll_rate(records: list[dict], after_seq: int, upto_seq: int,
              interval: float) -> tuple[float, int] | None:
    """Returns polls per interval of one server, from the mean time between consecutive
    `isrunning` requests for after_seq < seq <= upto_seq, and the number of those gaps.
    Returns None with fewer than two polls.

    Unlike a count of requests in a window, this rate does not depend on where the window
    edges fall between two polls, which moves a count by up to one poll per server.
    """
    arrivals = sorted(r["elapsed_ms"] for r in records
                      if after_seq < r["seq"] <= upto_seq and r.get("endpoint") == "isrunning")
    if len(arrivals) < 2:
        return None
    gaps = len(arrivals) - 1
    mean_gap = (arrivals[-1] - arrivals[0]) / 1000 / gaps
    return interval / mean_gap, gaps


class Snapshot:
    """Counters at one instant; a window is the difference of two snapshots."""

    def __init__(self, bench: Bench) -> None:
        self.t = bench.now()
        self.cpu_s = bench.operator.accounting.cpu_seconds()
        self.metrics = bench.operator.metrics()
        with ThreadPoolExecutor(max_workers=8) as pool:
            self.sim_totals = list(pool.map(lambda s: s.requests_total(), bench.sims))


class Bench:
    """State of one run: the processes it started, its clock and its results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.clock0 = time.monotonic()
        self.cleanup = Cleanup()
        self.workdir = Path(tempfile.mkdtemp(prefix="sklm-bench-"))
        self.password = secrets.token_hex(16)
        self.control_plane = ControlPlane()
        self.api: KubeApi | None = None
        self.sims: list[Simulator] = []
        self.operator: Operator | None = None
        self.sampler: Sampler | None = None
        self.watch: StatusWatch | None = None
        self.sim_totals_before_operator: list[int] = []
        self.results: dict = {
            "scenario": args.scenario,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        }

    def now(self) -> float:
        """Seconds since the run started: the clock of every time in the results."""
        return time.monotonic() - self.clock0

    # Setup, in the order of a run.

    def start_control_plane(self) -> None:
        log("starting the benchmark control plane (API server port "
            f"{CONTROL_PLANE_ENV['SKLM_APISERVER_PORT']}, state in "
            f"{CONTROL_PLANE_ENV['SKLM_CP_DIR']})")
        self.cleanup.push("control plane", self.control_plane.down)
        self.control_plane.up()
        # The CRD printed by the binary under test matches that binary, whatever crds/
        # contains now.
        crd = subprocess.run([str(self.args.operator_bin), "crd"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        self.control_plane.kubectl("apply", "-f", "-", stdin=crd)
        self.control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                                   "crd/sklmrestores.sklm.dev")
        self.api = KubeApi(self.control_plane)

    def start_simulators(self, count: int) -> None:
        log(f"starting {count} simulators")
        for index in range(count):
            sim = Simulator(self.args.sim_bin, index, self.workdir, SKLM_USER, self.password)
            self.cleanup.push(f"simulator {index}",
                              lambda s=sim: stop_process(s.process, f"simulator {s.index}"))
            self.sims.append(sim)
        deadline = time.monotonic() + 60
        for sim in self.sims:
            sim.wait_ready(deadline)
            sim.probe_clock(self.clock0)

    def create_namespaces_and_secrets(self) -> None:
        """Creates one namespace per server with the credentials Secret and the CA Secret
        of that server."""
        for sim in self.sims:
            namespace = namespace_of(sim.index)
            self.api.request("POST", "/api/v1/namespaces", namespace_manifest(namespace))
            secrets_path = f"/api/v1/namespaces/{namespace}/secrets"
            self.api.request("POST", secrets_path, secret_manifest(
                CREDENTIALS_SECRET, {"userid": SKLM_USER, "password": self.password}))
            self.api.request("POST", secrets_path, secret_manifest(
                CA_SECRET, {"ca.crt": sim.ca_file.read_text()}))

    def create_objects(self, count: int) -> None:
        """Creates `count` SklmRestores spread round-robin over the servers, with parallel
        POSTs on kept-alive connections, and records how long that took."""
        log(f"creating {count} SklmRestore objects")

        def create(index: int) -> None:
            sim = self.sims[index % len(self.sims)]
            path = f"{GROUP_PATH}/namespaces/{namespace_of(sim.index)}/sklmrestores"
            manifest = restore_manifest(f"restore-{index:05d}", sim.api_url,
                                        self.args.poll_interval, CREDENTIALS_SECRET, CA_SECRET)
            self.api.request("POST", path, manifest)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.args.create_workers) as pool:
            list(pool.map(create, range(count)))
        seconds = time.monotonic() - started
        self.results["creation"] = {"objects": count, "workers": self.args.create_workers,
                                    "seconds": seconds, "objects_per_second": count / seconds}
        log(f"created {count} objects in {seconds:.1f} s")

    def start_watch_and_operator(self) -> None:
        list_version, _ = self.api.list_resource_versions()
        self.sim_totals_before_operator = [sim.requests_total() for sim in self.sims]
        self.watch = StatusWatch(self.api, list_version, self.clock0)
        self.watch.start()
        self.cleanup.push("status watch", self.watch.stop)
        log("starting the operator")
        self.operator = Operator(self.args.operator_bin, self.control_plane.kubeconfig,
                                 self.workdir / "operator.log", self.clock0)
        self.cleanup.push("operator", lambda: stop_process(self.operator.process, "operator"))
        self.sampler = Sampler(self.operator.accounting, self.clock0)
        self.sampler.start()
        self.cleanup.push("sampler", self.sampler.stop)
        self.operator.wait_for_addr(time.monotonic() + 30)
        self.results["operator_binary"] = self.operator.identity()

    # Measurements.

    def measure_first_status(self, objects: int) -> None:
        """Waits until every object has a status and records the times from operator
        start."""
        deadline = time.monotonic() + self.args.first_status_timeout
        wait_until(f"all {objects} objects to get a first status", deadline,
                   lambda: len(self.watch.first_status) >= objects, 0.25)
        start = self.operator.started_at
        times = [t - start for t in self.watch.first_status.values()]
        self.results["first_status"] = {
            "objects": objects,
            "all_seconds": max(times),
            "from_operator_start": summarize(times),
            "operator_cpu_seconds_until_all": self.operator.accounting.cpu_seconds(),
        }
        log(f"all {objects} objects have a status {max(times):.1f} s after operator start")

    def wait_for_quiet(self) -> None:
        """Waits until no status write happened for 10 s (at most 180 s), so the idle
        window starts after the start-up writes and Events."""
        deadline = time.monotonic() + 180
        last = -1.0
        while time.monotonic() < deadline:
            writes = metric_sum(self.operator.metrics(), "sklm_status_writes_total")
            if writes == last:
                return
            last = writes
            time.sleep(10)
        log("status writes still moving after 180 s; starting the idle window anyway")

    def measure_idle(self, seconds: float) -> None:
        """Measures a window in which no server changes."""
        log(f"idle window: {seconds:.0f} s")
        _, versions_before = self.api.list_resource_versions()
        start = Snapshot(self)
        self.record_startup(start)
        time.sleep(seconds)
        end = Snapshot(self)
        _, versions_after = self.api.list_resource_versions()
        moved = sorted(k for k, v in versions_before.items() if versions_after.get(k) != v)
        window = self.window_figures(start, end)
        objects = len(versions_before)
        window.update({
            "objects": objects,
            "status_writes_per_object_per_hour":
                window["status_writes"] / objects / (window["seconds"] / 3600),
            "resource_versions_moved": len(moved),
            "resource_versions_moved_examples": moved[:5],
            "watch_events": self.watch.events_between(start.t, end.t),
        })
        self.results["idle"] = window

    def record_startup(self, idle_start: Snapshot) -> None:
        """Records CPU and SKLM requests from operator start to the idle window."""
        seconds = idle_start.t - self.operator.started_at
        per_server = [e - s for s, e in zip(self.sim_totals_before_operator,
                                            idle_start.sim_totals)]
        self.results["startup"] = {
            "seconds": seconds,
            "cpu_seconds": idle_start.cpu_s,
            "sklm_requests": sum(per_server),
            "sklm_requests_per_interval": sum(per_server) / (seconds / self.args.poll_interval),
            "seq_ranges": list(zip(self.sim_totals_before_operator, idle_start.sim_totals)),
        }

    def window_figures(self, start: Snapshot, end: Snapshot) -> dict:
        seconds = end.t - start.t
        cpu = end.cpu_s - start.cpu_s
        per_server = [e - s for s, e in zip(start.sim_totals, end.sim_totals)]
        intervals = seconds / self.args.poll_interval

        def metric_delta(name: str) -> float:
            return metric_sum(end.metrics, name) - metric_sum(start.metrics, name)

        return {
            "start_s": start.t,
            "end_s": end.t,
            "seconds": seconds,
            "cpu_seconds": cpu,
            "cpu_percent_of_core": 100 * cpu / seconds,
            "max_rss_kib": self.sampler.max_between("VmRSS", start.t, end.t),
            "max_open_files": self.sampler.max_between("fds", start.t, end.t),
            "status_writes": metric_delta("sklm_status_writes_total"),
            "reconciles": metric_delta("sklm_reconciles_total"),
            "polls": metric_delta("sklm_polls_total"),
            "logins": metric_delta("sklm_logins_total"),
            "sklm_requests": sum(per_server),
            "sklm_requests_per_interval": sum(per_server) / intervals,
            "sklm_requests_per_server_per_interval": {
                "min": min(per_server) / intervals,
                "max": max(per_server) / intervals,
                "mean": statistics.fmean(per_server) / intervals,
            },
            # Request log positions of each simulator, replaced by counts per endpoint
            # once the logs are read at the end.
            "seq_ranges": list(zip(start.sim_totals, end.sim_totals)),
        }

    def measure_restore(self, servers: int) -> None:
        """Walks `servers` simulators through the restore steps at once and measures the
        time from each phase change to the status event that shows it."""
        restoring = self.sims[:servers]
        keys = {sim.index: [k for k in self.watch.first_status
                            if k.startswith(namespace_of(sim.index) + "/")]
                for sim in restoring}
        objects = sum(len(v) for v in keys.values())
        log(f"restore on {servers} servers ({objects} objects)")
        start = Snapshot(self)
        steps = []
        for server_phase, restore_phase in RESTORE_STEPS:
            changed_at = {}
            for sim in restoring:
                if server_phase == "COMPLETED":
                    sim.control("PUT", "/result", {"result": 0})
                # The time before the request, so each latency includes the request itself.
                changed_at[sim.index] = self.now()
                sim.control("PUT", "/phase", {"phase": server_phase})
            deadline = time.monotonic() + self.args.poll_interval * 1.1 + 60

            def all_seen(phase=restore_phase, since=changed_at):
                return all(self.watch.first_time_of(k, phase, since[i])
                           for i, ks in keys.items() for k in ks)
            try:
                wait_until(f"status {restore_phase} on every restoring object", deadline,
                           all_seen, 0.25)
            except BenchError as error:
                log(str(error))
            latencies, missing = [], 0
            for index, object_keys in keys.items():
                for key in object_keys:
                    seen = self.watch.first_time_of(key, restore_phase, changed_at[index])
                    if seen is None:
                        missing += 1
                    else:
                        latencies.append(seen - changed_at[index])
            steps.append({"server_phase": server_phase, "restore_phase": restore_phase,
                          "changed_at": changed_at, "latency_seconds": summarize(latencies),
                          "objects_missing": missing})
            p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
            log(f"{restore_phase}: latency p50 {p50 or 0:.2f} s, p99 {p99 or 0:.2f} s, "
                f"{missing} objects never showed it")
            # Hold the step until --step-seconds after the change, so the next change
            # comes later than one poll interval.
            elapsed = self.now() - max(changed_at.values())
            time.sleep(max(0.0, self.args.step_seconds - elapsed))
        end = Snapshot(self)
        window = self.window_figures(start, end)
        window.update({"servers": servers, "objects": objects, "steps": steps})
        self.results["restore"] = window

    def collect_request_logs(self) -> None:
        """Reads every simulator's whole request log: logins, sessions, requests by
        endpoint per window, and when the first poll after each phase change arrived."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            logs = dict(zip((s.index for s in self.sims),
                            pool.map(lambda s: s.control("GET", "/requests"), self.sims)))
        per_server = []
        for sim in self.sims:
            records = logs[sim.index]
            sessions = {r["session"] for r in records
                        if r.get("session") is not None and r.get("endpoint") != "login"}
            per_server.append({
                "server": sim.index,
                "logins": sum(1 for r in records if r.get("endpoint") == "login"),
                "sessions_used": len(sessions),
                "requests": sklm_requests(records, 0, 1 << 62),
            })
        logins = sum(s["logins"] for s in per_server)
        sessions = sum(s["sessions_used"] for s in per_server)
        self.results["sessions"] = {
            "servers": len(per_server),
            "logins": logins,
            "sessions_used": sessions,
            "logins_per_session": logins / sessions if sessions else None,
            "max_logins_on_one_server": max(s["logins"] for s in per_server),
            "first_servers": per_server[:5],
        }
        for name in ("startup", "idle", "restore"):
            window = self.results.get(name)
            if not window:
                continue
            totals: dict[str, int] = {}
            rates, gaps = [], 0
            for sim, (after, upto) in zip(self.sims, window.pop("seq_ranges")):
                records = logs[sim.index]
                for endpoint, count in sklm_requests(records, after, upto).items():
                    totals[endpoint] = totals.get(endpoint, 0) + count
                measured = poll_rate(records, after, upto, self.args.poll_interval)
                if measured is not None:
                    rates.append(measured[0])
                    gaps += measured[1]
            window["sklm_requests_by_endpoint"] = totals
            window["polls_per_interval"] = sum(rates)
            window["poll_gaps"] = gaps
            window["polls_per_server_per_interval"] = {
                "servers": len(rates),
                "min": min(rates, default=None),
                "max": max(rates, default=None),
            }
        if "restore" in self.results:
            self.split_restore_latency(logs)

    def split_restore_latency(self, logs: dict[int, list[dict]]) -> None:
        """Splits each step's latency in two: from the change to the first `isrunning`
        request after it (on the simulator's clock, mapped to ours), and from that poll
        to the status event."""
        for step in self.results["restore"]["steps"]:
            poll_waits, after_poll = [], []
            for index, changed_at in step["changed_at"].items():
                sim = self.sims[index]
                polls = [r["elapsed_ms"] / 1000 + sim.clock_offset for r in logs[index]
                         if r.get("endpoint") == "isrunning"]
                first_poll = min((t for t in polls if t >= changed_at), default=None)
                if first_poll is None:
                    continue
                poll_waits.append(first_poll - changed_at)
                for key in self.watch.changes:
                    if key.startswith(namespace_of(index) + "/"):
                        seen = self.watch.first_time_of(key, step["restore_phase"], changed_at)
                        if seen is not None:
                            after_poll.append(seen - first_poll)
            step["change_to_next_poll_seconds"] = summarize(poll_waits)
            step["poll_to_status_event_seconds"] = summarize(after_poll)
            step["changed_at"] = {str(k): v for k, v in step["changed_at"].items()}

    def finish(self) -> None:
        """Records the operator's totals, then stops it with SIGTERM."""
        operator = self.operator
        memory = operator.accounting.memory_kib()
        total_cpu = operator.accounting.cpu_seconds()
        final_metrics = operator.metrics()
        self.sampler.stop()
        stopped_cleanly = stop_process(operator.process, "operator")

        entries = operator.log_entries()
        levels: dict[str, int] = {}
        for entry in entries:
            level = entry.get("level", "?")
            levels[level] = levels.get(level, 0) + 1
        problems = [e for e in entries if e.get("level") in ("WARN", "ERROR", "UNPARSED")]

        samples = self.sampler.samples
        self.results["operator"] = {
            "peak_rss_kib": memory.get("VmHWM"),
            "rss_at_end_kib": memory.get("VmRSS"),
            "threads": memory.get("Threads"),
            "max_open_files": max((s["fds"] for s in samples), default=None),
            "cpu_seconds_total": total_cpu,
            "seconds_running": self.now() - operator.started_at,
            "stopped_on_sigterm": stopped_cleanly,
            "log_lines_by_level": levels,
            "log_problems_examples": problems[:10],
            "metrics": {k: v for k, v in final_metrics.items()
                        if k.startswith(("sklm_status_writes", "sklm_polls_total",
                                         "sklm_logins", "sklm_reconciles", "sklm_restores"))},
            # Every 10th sample: [seconds, VmRSS KiB, CPU seconds, open files].
            "samples": [[round(s["t"], 1), s.get("VmRSS"), round(s["cpu_s"], 2), s["fds"]]
                        for s in samples[::10]],
        }
