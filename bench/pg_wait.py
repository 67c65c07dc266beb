"""psycopg's wait under gevent: its own choice (``wait_poll`` through gevent's ``select.poll``
emulation) against ``lunos.internals.gevent_wait`` (gevent's io watchers), one process, alternating rounds.

    python bench/pg_wait.py [--database-url URL] [--rounds 6] [--queries 3000]

Each round runs ``--queries`` round trips (``SELECT 1``) from ``--greenlets`` greenlets on their
own connections, and prints the process's CPU time and the wall time per round trip. CPU is
the figure that matters here: the wait is work the worker's one core does for every round trip.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import psycopg  # noqa: E402
from psycopg import waiting  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lunos.internals import gevent_wait  # noqa: E402


def run(url, greenlets, queries):
    conns = [psycopg.connect(url, autocommit=True) for _ in range(greenlets)]

    def work(conn, n):
        for _ in range(n):
            conn.execute("SELECT 1").fetchone()

    cpu, wall = time.process_time(), time.perf_counter()
    gevent.joinall([gevent.spawn(work, conn, queries // greenlets) for conn in conns], raise_error=True)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    for conn in conns:
        conn.close()
    return cpu * 1e6 / queries, wall * 1e6 / queries


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="postgresql://root@127.0.0.1:5432/test")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--greenlets", type=int, default=1)
    args = parser.parse_args()
    variants = {
        "psycopg's choice (" + waiting.wait.__name__ + ")": waiting.wait,
        "lunos.internals.gevent_wait": gevent_wait,
    }
    results = {name: [] for name in variants}
    run(args.database_url, args.greenlets, 500)  # warm-up
    for _ in range(args.rounds):
        for name, function in variants.items():
            waiting.wait = function  # psycopg's Connection.wait looks it up on each call
            results[name].append(run(args.database_url, args.greenlets, args.queries))
    for name, figures in results.items():
        cpu = [c for c, _ in figures]
        wall = [w for _, w in figures]
        print(
            f"{name:36} CPU per round trip median {statistics.median(cpu):6.1f} us "
            f"(rounds {', '.join(f'{c:.1f}' for c in cpu)}); wall median {statistics.median(wall):6.1f} us"
        )


if __name__ == "__main__":
    main()
