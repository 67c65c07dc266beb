"""Two or more source trees of the gateway against each other, in one run, rounds alternating:
python bench/ab.py --variant A=/path/to/tree --variant B=/path/to/other [--rounds 4] [--no-stack]
    [--database-url URL --redis-url URL]

The scenarios and settings of bench/run.py (one gevent worker each, the same upstream), with the
stack floor (bench/stack_floor.py) measured in every round beside them as the drift reference.
Every tree gets its own SQLite database, account and key; with --database-url they share that
database (their migrations must agree) and each has an account and key of its own. Rounds alternate the order of the
variants (A B, then B A, ...), since a shared machine drifts within a run; every round is printed.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import BENCH, CATALOG, PLANS, answers, cpu_seconds, free_port, gunicorn_worker, listens, load, wait_ready


def start(tree, env, args, log):
    with open(log, "wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *args],
            cwd=tree,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def setup(tree, env):
    """Migrate the tree's database and give it an account and a key; the key."""
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    subprocess.run([*flask, "db", "upgrade"], cwd=tree, env=env, check=True, capture_output=True)
    account = f"bench-{time.time_ns()}"
    subprocess.run(
        [*flask, "lunos", "create-account", account, "--credits", "1000000"],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
    )
    return (
        subprocess.run(
            [*flask, "lunos", "create-key", "--account", account],
            cwd=tree,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )


def measure(port, pid, key, seconds, streams):
    """bench/run.py's three scenarios, in its order, with the streams' CPU time of ``pid``."""
    rps = load("throughput", "--port", port, "--key", key, "--connections", 16, "--seconds", seconds)["rps"]
    p50_ms = load("throughput", "--port", port, "--key", key, "--connections", 1, "--seconds", seconds / 2)["p50_ms"]
    before = cpu_seconds(pid)
    streamed = load("streams", "--port", port, "--key", key, "--count", streams)
    streamed["cpu_s"] = cpu_seconds(pid) - before
    return {"rps": rps, "p50_ms": p50_ms, "streams": streamed}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", action="append", required=True, help="NAME=DIR, a source tree")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--no-stack", action="store_true", help="leave the stack floor out")
    parser.add_argument("--database-url", help="one database for every variant (default: SQLite each)")
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    variants = [tuple(v.split("=", 1)) for v in args.variant]

    tmp = Path(tempfile.mkdtemp(prefix="lunos-ab-"))
    up_port = free_port()
    (tmp / "catalog.toml").write_text(CATALOG.format(port=up_port))
    (tmp / "plans.toml").write_text(PLANS)
    base = {
        **os.environ,
        "LUNOS_CATALOG": str(tmp / "catalog.toml"),
        "LUNOS_PLANS": str(tmp / "plans.toml"),
        "LUNOS_SECRET_KEY": "bench-secret",
        "LUNOS_WORKERS": "1",
        "LUNOS_LOG_LEVEL": "WARNING",
        "LUNOS_AUTO_MIGRATE": "false",
    }
    if args.redis_url:
        base["LUNOS_REDIS_URL"] = args.redis_url
    processes, servers = [], []
    try:
        upstream = subprocess.Popen([sys.executable, str(BENCH / "upstream.py"), str(up_port)])
        processes.append(upstream)
        wait_ready(answers(f"http://127.0.0.1:{up_port}/"), "the upstream")
        servers.append(("direct", up_port, upstream.pid, "none"))
        if not args.no_stack:
            port = free_port()
            env = {
                **base,
                "LUNOS_DATABASE_URL": f"sqlite:///{tmp}/stack.db",
                "LUNOS_BIND": f"127.0.0.1:{port}",
                "LUNOS_STACK_FLOOR_UPSTREAM": f"http://127.0.0.1:{up_port}/v1/chat/completions",
            }
            stack = start(BENCH.parent, env, ["--pythonpath", "bench", "stack_floor:app"], tmp / "stack.log")
            processes.append(stack)
            wait_ready(listens(port), "bench/stack_floor.py", tmp / "stack.log")
            servers.append(("stack", port, gunicorn_worker(stack.pid), "none"))
        for name, tree in variants:
            port = free_port()
            database = args.database_url or f"sqlite:///{tmp}/{name}.db"
            env = {**base, "LUNOS_DATABASE_URL": database, "LUNOS_BIND": f"127.0.0.1:{port}"}
            key = setup(tree, env)
            gateway = start(tree, env, ["wsgi:app"], tmp / f"{name}.log")
            processes.append(gateway)
            wait_ready(answers(f"http://127.0.0.1:{port}/readyz"), name, tmp / f"{name}.log")
            servers.append((name, port, gunicorn_worker(gateway.pid), key))
        for _name, port, _pid, key in servers:  # warm up, as a server that has been up
            load("throughput", "--port", port, "--key", key, "--connections", 16, "--seconds", 2)
            load("streams", "--port", port, "--key", key, "--count", args.streams)
        print(
            f"{'round':>5} {'server':>10} {'req/s':>8} {'p50 ms':>8} {'added':>7} {'fail':>5} "
            f"{'total p50':>10} {'ratio':>6} {'cpu s':>6}",
            flush=True,
        )
        for number in range(args.rounds):
            ordered = servers[:1] + (servers[1:] if number % 2 == 0 else servers[1:][::-1])
            results = {name: measure(port, pid, key, args.seconds, args.streams) for name, port, pid, key in ordered}
            direct = results["direct"]
            for name, *_ in servers:
                r, s = results[name], results[name]["streams"]
                print(
                    f"{number + 1:>5} {name:>10} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} "
                    f"{r['p50_ms'] - direct['p50_ms']:>+7.2f} {s['failures']:>5} {s['total_p50_ms']:>10.0f} "
                    f"{s['total_p50_ms'] / direct['streams']['total_p50_ms']:>5.2f}x {s['cpu_s']:>6.2f}",
                    flush=True,
                )
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
