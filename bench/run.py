#!/usr/bin/env python3
"""Benchmark of the release operator against a private control plane and SKLM simulators.

    python3 bench/run.py one-idle   # 1 object on 1 server, idle for 300 s
    python3 bench/run.py fleet      # 5,000 objects on 50 servers, idle for 600 s, then a
                                    # restore on 10 of those servers at once

A run starts its own control plane (hack/control-plane.sh with SKLM_CP_DIR=target/bench-cp
and its own ports, never the shared one), one `sklm-sim` per server with its own CA, one
namespace per server holding the credentials Secret and that server's CA Secret, the
objects, and then the operator binary watching all namespaces. It reports:

- operator CPU seconds from /proc/<pid>/stat (utime + stime) and memory from
  /proc/<pid>/status (VmRSS each second, VmHWM at the end), so other load on the machine
  does not count;
- SKLM requests, logins and sessions from each simulator's request log (`GET /requests`);
- status writes from the operator's `/metrics` counter `sklm_status_writes_total`, and
  resourceVersions from a LIST before and after the idle window;
- from a watch on all SklmRestores: operator start to each object's first status, and a
  simulator phase change (`PUT /phase`) to the status event that shows it.

The summary goes to stdout and every figure to a JSON file (--out). Every wait has a
deadline, the whole run has a time limit, and every process the run starts is stopped on
exit, on SIGINT and on SIGTERM. Only loopback addresses are used.

Needs Python 3.9 or newer (standard library only), kubectl, and the binaries of
`cargo build --release -p sklm-restore-operator -p sklm-sim`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
from pathlib import Path

from benchlib.bench import RESTORE_STEPS, Bench
from benchlib.common import REPO, BenchTimeout, log
from benchlib.report import check_targets, machine, print_summary

SCENARIOS = {
    "one-idle": {"objects": 1, "servers": 1, "idle_seconds": 300, "restore_servers": 0},
    "fleet": {"objects": 5000, "servers": 50, "idle_seconds": 600, "restore_servers": 10},
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=sorted(SCENARIOS),
                        help="one-idle: 1 object, idle; fleet: many objects, idle, restore")

    parser.add_argument("--objects", type=int, help="number of SklmRestore objects")
    parser.add_argument("--servers", type=int, help="number of simulated key servers")
    parser.add_argument("--idle-seconds", type=float, help="length of the idle window")
    parser.add_argument("--restore-servers", type=int,
                        help="servers that run a restore after the idle window (0: none)")

    parser.add_argument("--poll-interval", type=int, default=10,
                        help="pollIntervalSeconds of every object (default: 10)")
    parser.add_argument("--step-seconds", type=float, default=25,
                        help="seconds from one restore step to the next (default: 25)")
    parser.add_argument("--first-status-timeout", type=float, default=300,
                        help="seconds to wait for every object's first status (default: 300)")
    parser.add_argument("--create-workers", type=int, default=4,
                        help="parallel connections that create the objects (default: 4)")

    parser.add_argument("--operator-bin", type=Path,
                        default=REPO / "target/release/sklm-restore-operator",
                        help="operator binary (default: target/release/sklm-restore-operator)")
    parser.add_argument("--sim-bin", type=Path, default=REPO / "target/release/sklm-sim",
                        help="simulator binary (default: target/release/sklm-sim)")
    parser.add_argument("--out", type=Path,
                        help="JSON results file (default: target/bench/<scenario>-<time>.json)")
    args = parser.parse_args(argv)

    for key, value in SCENARIOS[args.scenario].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not 1 <= args.servers <= args.objects:
        parser.error("--servers must be between 1 and --objects")
    if args.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = REPO / "target/bench" / f"{args.scenario}-{stamp}.json"
    return args


def time_limit(args: argparse.Namespace) -> int:
    """Upper bound of a whole run in seconds: setup, every window and wait, and margins."""
    restore = 0.0
    if args.restore_servers:
        restore = len(RESTORE_STEPS) * (args.poll_interval * 1.1 + 60 + args.step_seconds)
    return int(900 + args.first_status_timeout + 180 + args.idle_seconds + restore)


def run_scenario(bench: Bench) -> None:
    args = bench.args
    bench.start_control_plane()
    bench.start_simulators(args.servers)
    bench.create_namespaces_and_secrets()
    bench.create_objects(args.objects)
    bench.start_watch_and_operator()
    bench.measure_first_status(args.objects)
    bench.wait_for_quiet()
    bench.measure_idle(args.idle_seconds)
    if args.restore_servers:
        bench.measure_restore(min(args.restore_servers, args.servers))
    bench.collect_request_logs()
    bench.finish()
    bench.results["machine"] = machine()
    bench.results["settings"] = {k: str(v) if isinstance(v, Path) else v
                                 for k, v in vars(args).items()}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for binary in (args.operator_bin, args.sim_bin):
        if not binary.exists():
            print(f"{binary} not found: run `cargo build --release -p sklm-restore-operator "
                  "-p sklm-sim` first, or pass --operator-bin and --sim-bin", file=sys.stderr)
            return 2
    limit = time_limit(args)

    def on_signal(number, _frame):
        raise SystemExit(f"stopped by signal {number}")

    def on_alarm(_number, _frame):
        raise BenchTimeout(f"the run went over its time limit of {limit} s")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    bench = Bench(args)
    log(f"work directory {bench.workdir}; time limit {limit} s")
    try:
        run_scenario(bench)
        bench.results["targets"] = check_targets(bench.results, args.scenario,
                                                 args.poll_interval)
    finally:
        signal.alarm(0)
        bench.cleanup.run()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(bench.results, indent=2) + "\n")
    print_summary(bench.results)
    print(f"\nresults: {args.out}")
    return 0 if all(row["met"] is not False for row in bench.results["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
