"""The machine description, the comparison with the targets, and the printed summary."""

from __future__ import annotations

import datetime
import math
import os
import platform

MIB = 1024  # KiB per MiB
# Standard deviation of one poll gap over the interval: the hub (src/sklm/hub.rs,
# `next_delay`) draws each delay uniformly from the interval +-10 %, and a uniform
# distribution of width 0.2 has a standard deviation of 0.2 / sqrt(12).
GAP_RELATIVE_STD = 0.2 / math.sqrt(12)


def poll_rate_limit(polls_expected: float, gaps: int) -> float:
    """Upper bound for a measured poll rate when the expected one is `polls_expected`:
    three standard deviations of a mean of `gaps` jittered gaps above it."""
    return polls_expected * (1 + 3 * GAP_RELATIVE_STD / math.sqrt(max(gaps, 1)))


def machine() -> dict:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    return {"nproc": os.cpu_count(), "memory_gib": round(total_kib / MIB / MIB, 1),
            "cpu_model": model, "kernel": platform.release(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def check_targets(results: dict, scenario: str, poll_interval: int) -> list[dict]:
    """Compares the figures of a run with the targets of its scenario."""
    idle = results["idle"]
    operator = results["operator"]
    idle_writes_none = idle["status_writes"] == 0 and idle["resource_versions_moved"] == 0
    rows = []

    def row(figure, value, target, met):
        """Adds a row; `met` None marks a figure shown for information only."""
        rows.append({"figure": figure, "value": value, "target": target,
                     "met": None if met is None else bool(met)})

    if scenario == "one-idle":
        peak = operator["peak_rss_kib"] / MIB
        row("peak RSS (MiB)", peak, "<= 20", peak <= 20)
        row("idle CPU (% of a core)", idle["cpu_percent_of_core"], "< 0.2",
            idle["cpu_percent_of_core"] < 0.2)
        rate = idle["polls_per_interval"]
        only_polls = set(idle["sklm_requests_by_endpoint"]) <= {"isrunning"}
        row("SKLM requests per interval (idle)", rate, "1 GET",
            only_polls and rate <= poll_rate_limit(1, idle["poll_gaps"]))
        row("status writes in the idle window", idle["status_writes"], "0", idle_writes_none)
        return rows

    servers = results["sessions"]["servers"]
    rate = idle["polls_per_interval"]
    row("SKLM polls per interval, all servers (idle)", rate, f"<= {servers}",
        rate <= poll_rate_limit(servers, idle["poll_gaps"]))
    # The start-up and restore windows are short and contain polls that the design adds on
    # purpose (the first poll of each server, an early poll when a restore is seen), so
    # their rates are shown without a verdict.
    for name in ("startup", "restore"):
        if name in results:
            row(f"SKLM polls per interval, all servers ({name})",
                results[name]["polls_per_interval"], "info", None)
    other = sum(n for endpoint, n in idle["sklm_requests_by_endpoint"].items()
                if endpoint != "isrunning")
    row("SKLM requests other than polls (idle)", other, "0", other == 0)
    row("idle CPU (% of a core)", idle["cpu_percent_of_core"], "<= 5",
        idle["cpu_percent_of_core"] <= 5)
    peak = operator["peak_rss_kib"] / MIB
    row("peak RSS (MiB)", peak, "<= 100", peak <= 100)
    row("status writes per idle object per hour", idle["status_writes_per_object_per_hour"],
        "0", idle_writes_none)
    first = results["first_status"]["all_seconds"]
    row("operator start to all first statuses (s)", first, "<= 60", first <= 60)
    if "restore" in results:
        limit = poll_interval + 1
        steps = results["restore"]["steps"]
        worst = max(s["latency_seconds"]["p99"] or float("inf") for s in steps)
        missing = sum(s["objects_missing"] for s in steps)
        row("phase change to status, worst step p99 (s)", worst, f"<= {limit}",
            worst <= limit and missing == 0)
    return rows


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def print_summary(results: dict) -> None:
    host = results["machine"]
    print(f"\nscenario {results['scenario']} on {host['nproc']} cores, {host['cpu_model']}, "
          f"{host['date']}")
    if "creation" in results:
        creation = results["creation"]
        print(f"created {creation['objects']} objects in {creation['seconds']:.1f} s "
              f"({creation['objects_per_second']:.0f}/s)")

    first = results["first_status"]["from_operator_start"]
    print(f"first status after operator start: p50 {seconds(first['p50'])}, "
          f"all {seconds(first['max'])}")

    startup = results["startup"]
    print(f"operator start to idle window, {startup['seconds']:.0f} s: CPU "
          f"{startup['cpu_seconds']:.2f} s; SKLM requests {startup['sklm_requests_by_endpoint']},"
          f" polls per interval from their spacing {startup['polls_per_interval']:.2f}")

    idle = results["idle"]
    print(f"idle {idle['seconds']:.0f} s: CPU {idle['cpu_seconds']:.2f} s "
          f"({idle['cpu_percent_of_core']:.3f} % of a core); SKLM requests "
          f"{idle['sklm_requests']} ({idle['sklm_requests_per_interval']:.1f} per interval, "
          f"{idle['sklm_requests_by_endpoint']}), polls per interval from their spacing "
          f"{idle['polls_per_interval']:.2f}; status writes {idle['status_writes']:.0f}; "
          f"resourceVersions moved {idle['resource_versions_moved']}; reconciles "
          f"{idle['reconciles']:.0f}")

    if "restore" in results:
        restore = results["restore"]
        print(f"restore on {restore['servers']} servers ({restore['objects']} objects), "
              f"{restore['seconds']:.0f} s: CPU {restore['cpu_percent_of_core']:.2f} % of a "
              f"core; SKLM requests {restore['sklm_requests_by_endpoint']}, polls per "
              f"interval from their spacing {restore['polls_per_interval']:.2f}")
        for step in restore["steps"]:
            latency = step["latency_seconds"]
            print(f"  {step['restore_phase']:>16}: latency p50 {seconds(latency['p50'])}, "
                  f"p99 {seconds(latency['p99'])}, max {seconds(latency['max'])} "
                  f"(n={latency['count']}, never shown {step['objects_missing']}); "
                  f"wait for the next poll p99 "
                  f"{seconds(step['change_to_next_poll_seconds']['p99'])}; poll to status "
                  f"p99 {seconds(step['poll_to_status_event_seconds']['p99'])}")

    sessions = results["sessions"]
    print(f"logins {sessions['logins']} over {sessions['sessions_used']} sessions on "
          f"{sessions['servers']} servers")

    operator = results["operator"]
    print(f"operator: peak RSS {operator['peak_rss_kib'] / MIB:.1f} MiB, CPU "
          f"{operator['cpu_seconds_total']:.2f} s over {operator['seconds_running']:.0f} s, "
          f"at most {operator['max_open_files']} open files, log lines "
          f"{operator['log_lines_by_level']}")

    print("\n| figure | value | target | met |\n| --- | --- | --- | --- |")
    for row in results["targets"]:
        value = row["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        verdict = {True: "yes", False: "NO", None: "-"}[row["met"]]
        print(f"| {row['figure']} | {shown} | {row['target']} | {verdict} |")
