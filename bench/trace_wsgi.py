"""wsgi.py under tracemalloc, for bench/run.py --open-streams N --tracemalloc.

The first SIGRTMIN+1 takes a snapshot, the second another one and writes to
LUNOS_BENCH_TRACE_OUT what was allocated between them and is still held, by line and by file:
where an open stream's memory goes. Tracing slows the worker and inflates its RSS.
"""

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import tracemalloc  # noqa: E402

import gevent  # noqa: E402

tracemalloc.start(1)
from wsgi import app  # noqa: E402, F401

snapshots = []


def snapshot():
    gc.collect()
    snapshots.append(tracemalloc.take_snapshot())
    if len(snapshots) != 2:
        return
    with open(os.environ["LUNOS_BENCH_TRACE_OUT"], "w") as out:
        for grouping, top in (("lineno", 40), ("filename", 25)):
            stats = snapshots[1].compare_to(snapshots[0], grouping)
            out.write(f"by {grouping}: KB held, allocations; total {sum(s.size_diff for s in stats) / 1024:.0f} KB\n")
            for stat in stats[:top]:
                out.write(f"{stat.size_diff / 1024:9.0f} {stat.count_diff:8d} {stat.traceback}\n")


gevent.signal_handler(signal.SIGRTMIN + 1, lambda: gevent.spawn(snapshot))
