"""Many visitors at once, through the real server: `python -m benchmarks.crowd [--scenario four|eight|both]`.

Starts `python app.py` on 127.0.0.1 twice — with the scheduler (the default) and with it switched off
(`STYLIZE_MAX_RUNS=1`: one run at a time, as before it) — and sends the same arrivals to each with gradio_client:

- `four`: four visitors one second apart at the API's defaults (a photo and a preset only), then one visitor alone;
- `eight`: a 1,000-step run first, then seven visitors one second apart at two sizes (the defaults, and 3/4 of
  them), with a third of the default steps; with the scheduler only (one at a time, the seven would wait for the
  1,000 steps first: the serial figures are the sum of the runs).

For every visitor it prints when its request went, when its first step was reported (the status line's first
"Step"), and when its result came; then the figures the issue asks for: every first step's delay, the last result
against the serial total, a lone visitor's time against today's. The CPU is named. Timings never gate CI: this is
not collected by pytest (tests/test_app.py runs three concurrent clients and compares pixels).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "presets" / "photos" / "tubingen.jpg"


@dataclass
class Visit:
    name: str
    kwargs: dict
    sent: float = 0.0
    first_step: float | None = None
    result: float | None = None
    status: str = ""
    error: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(max_runs: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "STYLIZE_WEIGHTS": "embedded",
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "STYLIZE_MAX_REQUEST_S": "0"}  # the 1,000-step run is longer than a shared CPU's ceiling per request
    if max_runs is not None:
        env["STYLIZE_MAX_RUNS"] = str(max_runs)
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    return server, f"http://127.0.0.1:{port}/"


def connect(url: str, timeout: float = 300.0):
    from gradio_client import Client

    deadline = time.time() + timeout
    while True:
        try:
            return Client(url, verbose=False)
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(1.0)


def visit(client, visit: Visit, zero: float) -> None:
    from gradio_client import handle_file

    visit.sent = time.perf_counter() - zero
    try:
        job = client.submit(photo=handle_file(str(PHOTO)), api_name="/stylize", **visit.kwargs)
        for _, status in job:
            if visit.first_step is None and str(status).startswith("Step"):
                visit.first_step = time.perf_counter() - zero
            visit.status = str(status)
        job.result()
        visit.result = time.perf_counter() - zero
    except Exception as exc:  # reported, not raised: the other visitors go on
        visit.error = f"{type(exc).__name__}: {exc}"[:200]


def crowd(client, visits: list[Visit], gap: float) -> list[Visit]:
    zero = time.perf_counter()
    threads = []
    for k, v in enumerate(visits):
        time.sleep(max(0.0, zero + k * gap - time.perf_counter()))
        thread = threading.Thread(target=visit, args=(client, v, zero))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return visits


def table(title: str, visits: list[Visit]) -> None:
    print(f"\n{title}")
    print("| visitor | request at | first step after | result after | last status |")
    print("|---|---|---|---|---|")
    for v in visits:
        first = f"{v.first_step - v.sent:.1f} s" if v.first_step is not None else "—"
        done = f"{v.result - v.sent:.1f} s" if v.result is not None else v.error or "—"
        print(f"| {v.name} | {v.sent:.1f} s | {first} | {done} | {v.status[:60]} |")


def scenario_four(client, defaults: dict) -> tuple[list[Visit], list[Visit]]:
    """At the defaults the first server fitted (both servers run the same settings, whatever each one's start-up
    calibration makes of a busy moment)."""
    same = {"preset": "starry_night", **defaults}
    arrivals = crowd(client, [Visit(f"{k + 1}", same) for k in range(4)], 1.0)
    alone = crowd(client, [Visit("alone", same)], 0.0)
    return arrivals, alone


def scenario_eight(client, defaults: dict) -> list[Visit]:
    size, steps = defaults["size"], defaults["steps"]
    smaller = max(64, (size * 3 // 4) // 32 * 32)
    visits = [Visit("long (1,000 steps)", {"preset": "starry_night", "steps": 1000})]
    for k in range(7):
        s = size if k % 2 == 0 else smaller
        visits.append(Visit(f"{k + 2} ({s} px)", {"preset": "starry_night", "size": s, "steps": max(30, steps // 3)}))
    return crowd(client, visits, 1.0)


def api_defaults(client) -> dict:
    info = client.view_api(return_format="dict", print_info=False)
    params = {p["parameter_name"]: p.get("parameter_default") for p in info["named_endpoints"]["/stylize"]["parameters"]}
    return {"size": int(params["size"]), "steps": int(params["steps"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("four", "eight", "both"), default="four")
    args = parser.parse_args(argv)
    from stylize.engine.precision import cpu_name

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    results: dict[str, dict] = {}
    defaults: dict | None = None
    for label, max_runs in (("scheduler", None), ("one at a time", 1)):
        server, url = start_server(max_runs)
        try:
            client = connect(url)
            defaults = defaults or api_defaults(client)
            print(f"\n## {label}: {defaults['size']} px, {defaults['steps']} steps (the API's defaults on the first server)")
            crowd(client, [Visit("warm-up", {"preset": "starry_night", "steps": 5})], 0.0)
            if args.scenario in ("four", "both"):
                arrivals, alone = scenario_four(client, defaults)
                table(f"four visitors one second apart ({label})", arrivals)
                table(f"one visitor alone ({label})", alone)
                results.setdefault("four", {})[label] = (arrivals, alone)
            if args.scenario in ("eight", "both") and max_runs is None:
                visits = scenario_eight(client, defaults)
                table(f"eight visitors, two sizes, a 1,000-step run first ({label})", visits)
                results.setdefault("eight", {})[label] = visits
            client.close()
        finally:
            server.terminate()
            server.wait(30)
    if "eight" in results:
        visits = results["eight"]["scheduler"]
        long_end = visits[0].result
        firsts = [v.first_step - v.sent for v in visits if v.first_step is not None]
        short = [v.result for v in visits[1:] if v.result is not None]
        long_end = long_end if long_end is not None else float("inf")
        print("\n## eight visitors: the figures")
        print(f"first step after its request: worst {max(firsts):.1f} s, median {statistics.median(firsts):.1f} s")
        print(f"short runs done before the 1,000-step run: {sum(r < long_end for r in short)} of {len(visits) - 1}")
    if "four" in results:
        (crowd_on, alone_on), (crowd_off, alone_off) = results["four"]["scheduler"], results["four"]["one at a time"]
        firsts = [v.first_step - v.sent for v in crowd_on if v.first_step is not None]
        last_on = max(v.result for v in crowd_on if v.result is not None)
        last_off = max(v.result for v in crowd_off if v.result is not None)
        print("\n## four visitors: the figures")
        print(f"first step after its request (scheduler): worst {max(firsts):.1f} s, median "
              f"{statistics.median(firsts):.1f} s; one at a time: worst "
              f"{max(v.first_step - v.sent for v in crowd_off if v.first_step is not None):.1f} s")
        print(f"last result: {last_on:.1f} s with the scheduler, {last_off:.1f} s one at a time "
              f"({last_on / last_off:.2f}×)")
        lone_on, lone_off = (alone_on[0].result - alone_on[0].sent), (alone_off[0].result - alone_off[0].sent)
        print(f"a lone visitor: {lone_on:.1f} s with the scheduler, {lone_off:.1f} s one at a time "
              f"({lone_on / lone_off:.2f}×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
