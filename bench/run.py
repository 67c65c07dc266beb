"""Gateway against direct upstream, in one run: python bench/run.py [--database-url URL] [--redis-url URL] [--floor]

Starts bench/upstream.py (a fixed-answer upstream), the gateway under gunicorn with one gevent
worker, and bench/load.py as the client, each in its own process, then prints:
non-streaming requests/s at 16 connections, p50 latency at 1 connection, and 1,000 concurrent
streams (20 chunks, 50 ms apart): failures, time-to-first-chunk, total time p50/p99 and the CPU
time the serving process spent on them (Linux). With --floor, for scale: the same figures for
bench/stack_floor.py (the gunicorn settings, Flask and requests relaying, with no Lunos code), and
the streams through bench/floor.py (a relay with no framework at all).

--workers, --open-streams, --burst and --endpoints run those scenarios instead (bench/scenarios.py),
each alone or several in one run.
"""

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

CATALOG = """
default_model = "bench"
[providers.bench]
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
timeout_s = 60
[[models]]
id = "bench"
provider = "bench"
upstream_model = "bench"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
context_length = 8000
max_output_tokens = 100
"""

# One plan with limits far above what the benchmark sends: limits are checked, never hit.
PLANS = """
default_plan = "bench"
[plans.bench]
monthly_credits_usd = 0
requests_per_minute = 100000000
tokens_per_minute = 100000000000
models = ["*"]
api_access = true
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(ready, what, log=None):
    """Poll ``ready()`` for up to 60 s; a connection error counts as not ready yet."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except OSError:  # requests' errors included
            pass
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise SystemExit(f"not ready after 60 s: {what}\n{tail}")


def answers(url):
    return lambda: requests.get(url, timeout=5).status_code < 500


def listens(port):
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None


def gunicorn_worker(master_pid):
    """The pid of the master's one worker (Linux); None elsewhere."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
        except OSError:
            return None
        if children:
            return int(children[0])
        time.sleep(0.2)
    return None


def cpu_seconds(pid):
    """User and system CPU time of a process so far (Linux), 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def streams(port, pid, key, count):
    """One round of concurrent streams, with the CPU time the serving process ``pid`` spent on it."""
    before = cpu_seconds(pid)
    result = load("streams", "--port", port, "--key", key, "--count", count)
    result["cpu_s"] = cpu_seconds(pid) - before
    return result


def gunicorn(args, env, log):
    """gunicorn with Lunos's settings (one gevent worker here), its output in ``log``."""
    with open(log, "wb") as log_file:  # the access log goes here too, as in production
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *args],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def load(*args):
    output = subprocess.run(
        [sys.executable, str(BENCH / "load.py"), *map(str, args)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    parser.add_argument("--redis-url")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--floor", action="store_true", help="also measure bench/stack_floor.py and bench/floor.py")
    scenario = parser.add_argument_group("scenarios, run instead of the default round (bench/scenarios.py)")
    scenario.add_argument("--workers", help="worker counts, e.g. 1,2: requests/s at 16 and 32 connections for each")
    scenario.add_argument("--open-streams", type=int, metavar="N", help="N quiet streams open at once on one worker")
    scenario.add_argument("--quiet-s", type=float, default=60, help="--open-streams: upstream silence (60 s)")
    scenario.add_argument("--keepalive-s", type=float, default=5, help="--open-streams: LUNOS_STREAM_KEEPALIVE_S (5)")
    scenario.add_argument(
        "--tracemalloc", action="store_true", help="--open-streams: where the gateway's memory goes (slow)"
    )
    scenario.add_argument("--burst", help="burst sizes, e.g. 1000,5000: requests sent at once to one worker")
    scenario.add_argument("--burst-stream", action="store_true", help="--burst: streamed requests")
    scenario.add_argument("--endpoints", type=int, metavar="N", help="a model of N endpoints against one of one")
    scenario.add_argument("--rounds", type=int, default=2, help="--endpoints: rounds of the two models in turn")
    args = parser.parse_args()
    scenarios = None
    if args.workers or args.open_streams or args.burst or args.endpoints:
        import scenarios
    # Thousands of sockets per process: every process started from here inherits the limit.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    tmp = Path(tempfile.mkdtemp(prefix="lunos-bench-"))
    up_port, gw_port = free_port(), free_port()
    catalog = CATALOG.format(port=up_port)
    if args.endpoints:
        catalog += scenarios.endpoints_catalog(args.endpoints, up_port)
    if args.open_streams:  # the upstream's silence must stay under the provider's timeout
        catalog = catalog.replace("timeout_s = 60", f"timeout_s = {max(60, int(args.quiet_s) + 60)}")
    (tmp / "catalog.toml").write_text(catalog)
    (tmp / "plans.toml").write_text(PLANS)
    env = {
        **os.environ,
        "LUNOS_DATABASE_URL": args.database_url or f"sqlite:///{tmp}/bench.db",
        "LUNOS_CATALOG": str(tmp / "catalog.toml"),
        "LUNOS_PLANS": str(tmp / "plans.toml"),
        "LUNOS_SECRET_KEY": "bench-secret",
        "LUNOS_WORKERS": "1",
        "LUNOS_BIND": f"127.0.0.1:{gw_port}",
        "LUNOS_LOG_LEVEL": "WARNING",
    }
    if args.redis_url:
        env["LUNOS_REDIS_URL"] = args.redis_url
    processes = []
    try:
        upstream = subprocess.Popen([sys.executable, str(BENCH / "upstream.py"), str(up_port)])
        processes.append(upstream)
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        account = f"bench-{int(time.time())}"
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "lunos", "create-account", account, "--credits", "1000000"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        key = (
            subprocess.run(
                [sys.executable, "-m", "flask", "--app", "app", "lunos", "create-key", "--account", account],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        if scenarios:
            wait_ready(answers(f"http://127.0.0.1:{up_port}/"), "the upstream")
            results = scenarios.run(args, env, key, up_port, tmp, processes)
            return scenarios.report(results, args, machine(args))
        log = tmp / "gunicorn.log"
        gateway = gunicorn(["wsgi:app"], {**env, "LUNOS_AUTO_MIGRATE": "false"}, log)
        processes.append(gateway)
        wait_ready(answers(f"http://127.0.0.1:{up_port}/"), "the upstream")
        wait_ready(answers(f"http://127.0.0.1:{gw_port}/readyz"), "the gateway", log)
        servers = [("direct", up_port, upstream.pid), ("gateway", gw_port, gunicorn_worker(gateway.pid))]
        if args.floor:
            floor_port, stack_port = free_port(), free_port()
            floor = subprocess.Popen([sys.executable, str(BENCH / "floor.py"), str(floor_port), str(up_port)])
            processes.append(floor)
            wait_ready(listens(floor_port), "bench/floor.py")
            stack_log = tmp / "stack_floor.log"
            stack = gunicorn(
                ["--pythonpath", "bench", "stack_floor:app"],
                {
                    **env,
                    "LUNOS_AUTO_MIGRATE": "false",
                    "LUNOS_BIND": f"127.0.0.1:{stack_port}",
                    "LUNOS_STACK_FLOOR_UPSTREAM": f"http://127.0.0.1:{up_port}/v1/chat/completions",
                },
                stack_log,
            )
            processes.append(stack)
            wait_ready(listens(stack_port), "bench/stack_floor.py", stack_log)
            servers.insert(1, ("stack", stack_port, gunicorn_worker(stack.pid)))

        results = {}
        for name, port, pid in servers:
            # Warm up: connection pools filled, code paths exercised, as in a server that has been up.
            load("throughput", "--port", port, "--key", key, "--connections", 16, "--seconds", 2)
            load("streams", "--port", port, "--key", key, "--count", args.streams)
            results[name] = {
                "throughput": load(
                    "throughput", "--port", port, "--key", key, "--connections", 16, "--seconds", args.seconds
                ),
                "latency": load(
                    "throughput", "--port", port, "--key", key, "--connections", 1, "--seconds", args.seconds / 2
                ),
                "streams": streams(port, pid, key, args.streams),
            }
        if args.floor:
            load("streams", "--port", floor_port, "--count", args.streams)
            results["floor"] = {"streams": streams(floor_port, floor.pid, key, args.streams)}
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    report(results, args)


def machine(args):
    backend = "PostgreSQL" if args.database_url and "postgres" in args.database_url else "SQLite"
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"database: {backend}; redis: {'yes' if args.redis_url else 'no'}"
    )


def report(results, args):
    """A column per server measured in full, each ratio against direct; the gateway's last."""
    d, g = results["direct"], results["gateway"]
    names = [name for name in ("direct", "stack", "gateway") if name in results]
    print(machine(args))
    print(f"{'':34}" + "".join(f"{name:>10}{'ratio' if name != 'direct' else '':>7}" for name in names))
    rows = [
        ("requests/s, 16 connections", "throughput", "rps"),
        ("p50 latency ms, 1 connection", "latency", "p50_ms"),
        (f"{args.streams} streams: failures", "streams", "failures"),
        ("streams: first chunk p50 ms", "streams", "ttft_p50_ms"),
        ("streams: first chunk p99 ms", "streams", "ttft_p99_ms"),
        ("streams: total p50 ms", "streams", "total_p50_ms"),
        ("streams: total p99 ms", "streams", "total_p99_ms"),
        ("streams: server process CPU s", "streams", "cpu_s"),
    ]
    for label, scenario, figure in rows:
        line, direct = f"{label:34}", d[scenario][figure]
        for name in names:
            value = results[name][scenario][figure]
            ratio = "" if name == "direct" else f"{value / direct:.2f}x" if direct else "-"
            line += f"{value:>10.1f}{ratio:>7}"
        print(line)
    for name in names[1:]:
        print(f"added p50 latency, {name}: {results[name]['latency']['p50_ms'] - d['latency']['p50_ms']:.2f} ms")
    if "floor" in results:
        f = results["floor"]["streams"]
        print(
            f"streams through bench/floor.py: failures {f['failures']}, total p50 {f['total_p50_ms']:.1f} ms "
            f"({f['total_p50_ms'] / d['streams']['total_p50_ms']:.2f}x direct), CPU {f['cpu_s']:.2f} s"
        )
    if g["streams"]["failure_kinds"]:
        print("gateway stream failures:", g["streams"]["failure_kinds"])
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"gateway-{int(time.time())}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
