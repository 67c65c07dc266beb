"""The scenarios bench/run.py runs instead of its default round, each alone or several in one run.

--workers 1,2       requests/s at 16 and 32 connections with each number of gevent workers
--open-streams N    N quiet streams held open at once on one worker: failures, the worker's RSS
--burst 1000,5000   N requests sent at once to one worker: answers by status, pool connections
--endpoints 3       a model served by 3 endpoints against the one-endpoint model

With --floor, --workers and --open-streams measure bench/stack_floor.py beside the gateway.
"""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import requests
from run import BENCH, ROOT, answers, cpu_seconds, free_port, gunicorn, listens, load, wait_ready

TAG = "lunos-bench"  # application_name / client_name of the gateway's database and Redis connections
MULTI = "bench-multi"  # the model served by several endpoints (--endpoints)
PER_PROCESS = 1000  # streams or requests per load process


def tagged(env):
    """The environment with the gateway's connections named, so that they can be counted."""
    env = dict(env)
    url = env["LUNOS_DATABASE_URL"]
    if url.startswith("postgresql"):
        env["LUNOS_DATABASE_URL"] = url + ("&" if "?" in url else "?") + f"application_name={TAG}"
    if env.get("LUNOS_REDIS_URL"):
        url = env["LUNOS_REDIS_URL"]
        env["LUNOS_REDIS_URL"] = url + ("&" if "?" in url else "?") + f"client_name={TAG}"
    return env


def endpoints_catalog(count, port):
    """A model served by ``count`` endpoints, each at a provider of its own, all at the upstream."""
    text = ""
    for n in range(1, count + 1):
        text += f'[providers.bench-{n}]\nkind = "openai"\nbase_url = "http://127.0.0.1:{port}/v1"\ntimeout_s = 60\n'
    text += f'[[models]]\nid = "{MULTI}"\ncontext_length = 8000\nmax_output_tokens = 100\n'
    for n in range(1, count + 1):
        text += (
            f'[[models.endpoints]]\nprovider = "bench-{n}"\nupstream_model = "bench"\n'
            "input_usd_per_mtok = 1.0\noutput_usd_per_mtok = 2.0\n"
        )
    return text


def gunicorn_workers(master_pid, count):
    """The pids of the master's ``count`` workers (Linux); [] elsewhere."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
        except OSError:
            return []
        if len(children) >= count:
            return [int(pid) for pid in children]
        time.sleep(0.2)
    return []


def status_kb(pid, field):
    """A figure of /proc/PID/status in kB (VmRSS, VmHWM), 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def listen_overflows():
    """The kernel's count of connections dropped for a full listen queue (all of the host's)."""
    try:
        lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2]):
        if names[0] == "TcpExt:" and "ListenOverflows" in names:
            return int(values[names.index("ListenOverflows")])
    return 0


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Ctx:
    """What every scenario shares: the run's options, environment, key, upstream, processes."""

    def __init__(self, args, env, key, up_port, tmp, processes):
        self.args, self.env, self.key, self.up_port = args, tagged(env), key, up_port
        self.tmp, self.processes = tmp, processes
        self.postgres = "postgres" in (args.database_url or "")

    def start(self, kind, workers=1, extra=None):
        """The gateway or the stack floor under gunicorn on a port of its own, ready."""
        port = free_port()
        env = {
            **self.env,
            "LUNOS_AUTO_MIGRATE": "false",
            "LUNOS_BIND": f"127.0.0.1:{port}",
            "LUNOS_WORKERS": str(workers),
            "LUNOS_GRACEFUL_TIMEOUT_S": "5",
            **(extra or {}),
        }
        log = self.tmp / f"{kind}-{port}.log"
        if kind == "gateway" and getattr(self.args, "tracemalloc", False):
            env["LUNOS_BENCH_TRACE_OUT"] = str(self.tmp / f"tracemalloc-{port}.txt")
            process = gunicorn(["--pythonpath", "bench", "trace_wsgi:app"], env, log)
            ready = answers(f"http://127.0.0.1:{port}/readyz")
        elif kind == "gateway":
            process = gunicorn(["wsgi:app"], env, log)
            ready = answers(f"http://127.0.0.1:{port}/readyz")
        else:
            env["LUNOS_STACK_FLOOR_UPSTREAM"] = f"http://127.0.0.1:{self.up_port}/v1/chat/completions"
            process = gunicorn(["--pythonpath", "bench", "stack_floor:app"], env, log)
            ready = listens(port)
        self.processes.append(process)
        wait_ready(ready, kind, log)
        return {"kind": kind, "port": port, "process": process, "pids": gunicorn_workers(process.pid, workers)}

    def stop(self, server):
        server["process"].terminate()
        server["process"].wait(timeout=30)
        self.processes.remove(server["process"])

    def throughput(self, server, connections, seconds, model="bench"):
        return load(
            "throughput",
            "--port",
            server["port"],
            "--key",
            self.key,
            "--connections",
            connections,
            "--seconds",
            seconds,
            "--model",
            model,
        )

    def kinds(self):
        return (["stack"] if self.args.floor else []) + ["gateway"]


def pool_env(ctx, workers):
    """Database pools that fit 40 of PostgreSQL's connections over all the workers (each worker's
    default is 10 + 10 overflow)."""
    per_worker = 40 // workers
    if not ctx.postgres or per_worker >= 20:
        return {}
    size = max(1, per_worker // 2)
    return {"LUNOS_DB_POOL_SIZE": str(size), "LUNOS_DB_POOL_OVERFLOW": str(max(1, per_worker - size))}


def workers_scenario(ctx):
    counts = [int(n) for n in str(ctx.args.workers).split(",")]
    results = {}
    for workers in counts:
        for kind in ctx.kinds():
            extra = pool_env(ctx, workers) if kind == "gateway" else {}
            server = ctx.start(kind, workers, extra)
            ctx.throughput(server, 32, 2)  # warm-up: every worker's pools filled
            cpu, machine = [cpu_seconds(pid) for pid in server["pids"]], machine_busy_s()
            r16 = ctx.throughput(server, 16, ctx.args.seconds)
            # How busy each worker was at 16 connections: a worker short of a core waits on something.
            r16["cpu_share"] = [
                round((cpu_seconds(pid) - before) / ctx.args.seconds, 2) for pid, before in zip(server["pids"], cpu)
            ]
            # And the machine: what the workers leave of its cores goes to the load generator, the
            # upstream, PostgreSQL and Redis; when none is left, more workers cannot go faster.
            r16["machine_busy"] = round((machine_busy_s() - machine) / ctx.args.seconds, 2)
            r32 = ctx.throughput(server, 32, ctx.args.seconds)
            ctx.stop(server)
            results[f"{kind} x{workers}"] = {"workers": workers, "pools": extra, "c16": r16, "c32": r32}
    return results


def machine_busy_s():
    """CPU time every core of the machine has spent busy so far, in seconds (Linux; 0 elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def report_workers(results):
    print("--workers: requests/s (errors), each worker count against the first")
    print(f"{'':22}{'16 connections':>22}{'32 connections':>22}")
    first = {}
    for name, r in results.items():
        kind = name.split()[0]
        first.setdefault(kind, r)
        line = f"{name:22}"
        for c in ("c16", "c32"):
            ratio = r[c]["rps"] / first[kind][c]["rps"] if first[kind][c]["rps"] else 0
            line += f"{r[c]['rps']:>10.1f} ({r[c]['errors']}) {ratio:>6.2f}x"
        line += f"  workers' CPU at 16: {'/'.join(f'{c:.2f}' for c in r['c16']['cpu_share'])} cores"
        line += f", machine {r['c16']['machine_busy']:.2f} of {os.cpu_count()}"
        print(line + (f"  pools {r['pools']}" if r["pools"] else ""))


def hold_round(ctx, server, count, quiet_s):
    """``count`` quiet streams from as many load processes as needed, put together."""
    processes = math.ceil(count / PER_PROCESS)
    shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    loads = [
        subprocess.Popen(
            [sys.executable, str(BENCH / "load.py"), "hold", "--port", str(server["port"]), "--key", ctx.key]
            + ["--count", str(share), "--quiet-s", str(quiet_s)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for share in shares
    ]
    parts = [json.loads(p.communicate()[0]) for p in loads]
    return {
        "streams": count,
        "load_processes": processes,
        "failures": sum(p["failures"] for p in parts),
        "failure_kinds": sorted({k for p in parts for k in p["failure_kinds"]})[:5],
        "last_opened": max(p["last_opened"] for p in parts),
        "open_p50_s": max(p["open_p50_s"] for p in parts),  # the slowest process's
        "open_max_s": max(p["open_max_s"] for p in parts),
        "first_ended": min(p["first_ended"] or math.inf for p in parts),
        "keepalives_min": min(p["keepalives_min"] for p in parts),
        "keepalives_max": max(p["keepalives_max"] for p in parts),
    }


class Sampler(threading.Thread):
    """A worker's resident memory and descriptors, every ``every_s``."""

    def __init__(self, pid, every_s=0.5, at_fds=None):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.samples, self.done = pid, every_s, [], threading.Event()
        self.at_fds = at_fds  # --tracemalloc: the second snapshot once this many descriptors are open

    def run(self):
        while not self.done.is_set():
            self.samples.append((time.time(), status_kb(self.pid, "VmRSS"), open_fds(self.pid)))
            if self.at_fds and self.samples[-1][2] >= self.at_fds:
                self.at_fds = None
                os.kill(self.pid, signal.SIGRTMIN + 1)
            self.done.wait(self.every_s)

    def stop(self):
        self.done.set()
        self.join()


def open_streams_scenario(ctx):
    count, quiet_s = ctx.args.open_streams, ctx.args.quiet_s
    extra = {"LUNOS_STREAM_KEEPALIVE_S": str(ctx.args.keepalive_s), "LUNOS_WORKER_CONNECTIONS": str(count + 500)}
    results = {}
    for kind in ctx.kinds():
        server = ctx.start(kind, 1, extra)
        pid = server["pids"][0]
        # Warm-up: code paths run, pools filled, as in a worker that has been up a while.
        hold_round(ctx, server, min(200, count), 1)
        ctx.throughput(server, 16, 1)
        trace = kind == "gateway" and ctx.args.tracemalloc
        if trace:
            os.kill(pid, signal.SIGRTMIN + 1)  # the first snapshot
        time.sleep(3 if trace else 1)
        before = status_kb(pid, "VmRSS")
        sampler = Sampler(pid, at_fds=2 * count if trace else None)
        sampler.start()
        started, cpu, overflows = time.time(), cpu_seconds(pid), listen_overflows()
        result = hold_round(ctx, server, count, quiet_s)
        result["cpu_s"] = cpu_seconds(pid) - cpu
        result["listen_overflows"] = listen_overflows() - overflows
        sampler.stop()
        # The peak while every stream was open: between the last one's headers and the first end.
        window = [s for s in sampler.samples if result["last_opened"] <= s[0] <= result["first_ended"]]
        peak = max(window or sampler.samples, key=lambda s: s[1])
        result.update(
            all_open_s=max(0.0, min(result["first_ended"], time.time()) - result["last_opened"]),
            opened_in_s=result["last_opened"] - started,
            rss_before_kb=before,
            rss_peak_kb=peak[1],
            fds_at_peak=peak[2],
            fds_max=max(s[2] for s in sampler.samples),
            hwm_kb=status_kb(pid, "VmHWM"),
            kb_per_stream=(peak[1] - before) / count,
            sampled_while_all_open=bool(window),
        )
        if trace:
            result["tracemalloc"] = str(ctx.tmp / f"tracemalloc-{server['port']}.txt")
        ctx.stop(server)
        results[kind] = result
    return results


def report_open_streams(results, args):
    print(
        f"--open-streams {args.open_streams}: one worker, upstream quiet {args.quiet_s:g} s, "
        f"gateway keep-alive every {args.keepalive_s:g} s"
    )
    rows = [
        ("failures", "failures", "d"),
        ("all opened after s", "opened_in_s", ".1f"),
        ("time to headers p50 s", "open_p50_s", ".1f"),
        ("time to headers max s", "open_max_s", ".1f"),
        ("worker CPU s, whole round", "cpu_s", ".1f"),
        ("listen queue overflows (host)", "listen_overflows", "d"),
        ("all open at once for s", "all_open_s", ".1f"),
        ("keep-alives per stream, min", "keepalives_min", "d"),
        ("worker RSS before, MB", "rss_before_kb", "mb"),
        ("worker RSS peak all open, MB", "rss_peak_kb", "mb"),
        ("worker descriptors at peak", "fds_at_peak", "d"),
        ("RSS per open stream, KB", "kb_per_stream", ".1f"),
    ]
    print(f"{'':32}" + "".join(f"{name:>12}" for name in results))
    for label, figure, fmt in rows:
        cells = [f"{r[figure] / 1024:.1f}" if fmt == "mb" else format(r[figure], fmt) for r in results.values()]
        print(f"{label:32}" + "".join(f"{c:>12}" for c in cells))
    for name, r in results.items():
        if r["failure_kinds"]:
            print(f"{name} stream failures:", r["failure_kinds"])
        if r.get("tracemalloc"):
            print(f"{name}: under tracemalloc (RSS inflated); what the streams hold: {r['tracemalloc']}")
        if not r["sampled_while_all_open"]:
            print(f"{name}: no sample while every stream was open (peak over the whole round)")


class Poller(threading.Thread):
    """The most connections PostgreSQL and Redis see, the gateway's (tagged) and in all."""

    def __init__(self, database_url, redis_url, every_s=0.05):
        super().__init__(daemon=True)
        self.every_s, self.done, self.peaks = every_s, threading.Event(), Counter()
        self.pg = self.redis = None
        if database_url and database_url.startswith("postgresql"):
            import psycopg

            # The gateway's URL may name SQLAlchemy's driver (postgresql+psycopg://); libpq does not.
            self.pg = psycopg.connect(
                database_url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True
            )
        if redis_url:
            import redis

            self.redis = redis.Redis.from_url(redis_url)

    def sample(self):
        found = {}
        if self.pg:
            found["pg_gateway"], found["pg_all"] = self.pg.execute(
                "SELECT count(*) FILTER (WHERE application_name = %s), count(*) FROM pg_stat_activity "
                "WHERE datname = current_database()",
                (TAG,),
            ).fetchone()
        if self.redis:
            clients = self.redis.client_list()
            found["redis_gateway"] = sum(c.get("name") == TAG for c in clients)
            found["redis_all"] = len(clients) - 1  # not this one
        return found

    def run(self):
        while not self.done.is_set():
            for name, value in self.sample().items():
                self.peaks[name] = max(self.peaks[name], value)
            self.done.wait(self.every_s)

    def stop(self):
        self.done.set()
        self.join()
        return dict(self.peaks)


def burst_scenario(ctx):
    results = {}
    for count in [int(n) for n in str(ctx.args.burst).split(",")]:
        server = ctx.start("gateway", 1, {"LUNOS_WORKER_CONNECTIONS": str(count + 500)})
        ctx.throughput(server, 16, 2)  # warm-up
        processes = math.ceil(count / PER_PROCESS)
        shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
        loads = [
            subprocess.Popen(
                [sys.executable, str(BENCH / "load.py"), "burst", "--port", str(server["port"]), "--key", ctx.key]
                + ["--count", str(share)]
                + (["--stream"] if ctx.args.burst_stream else []),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for share in shares
        ]
        for process in loads:
            if process.stdout.readline().strip() != "ready":
                raise SystemExit("a burst load process did not get its connections up")
        poller = Poller(ctx.args.database_url, ctx.args.redis_url)
        before = poller.sample()
        poller.start()
        started = time.monotonic()
        for process in loads:
            process.stdin.write("go\n")
            process.stdin.flush()
        parts = [json.loads(p.communicate()[0]) for p in loads]
        elapsed = time.monotonic() - started
        peaks = poller.stop()
        ctx.stop(server)
        statuses = Counter()
        for part in parts:
            statuses.update(part["statuses"])
        results[str(count)] = {
            "requests": count,
            "statuses": dict(statuses),
            "samples": {k: v for p in parts for k, v in p["samples"].items()},
            "elapsed_s": elapsed,
            "p50_ms": max(p["p50_ms"] for p in parts),  # the slowest process's
            "max_ms": max(p["max_ms"] for p in parts),
            "connections_before": before,
            "connections_peak": peaks,
        }
    return results


def report_burst(results, args):
    kind = "streamed" if args.burst_stream else "non-streamed"
    print(f"--burst: {kind} requests sent at once to one worker")
    print(
        f"{'requests':>9}{'answers by status':>28}{'all done s':>12}{'p50 ms':>9}{'max ms':>9}"
        "  connections before -> peak"
    )
    for r in results.values():
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
        connections = ", ".join(
            f"{name} {r['connections_before'].get(name, 0)} -> {r['connections_peak'].get(name, 0)}"
            for name in ("pg_gateway", "pg_all", "redis_gateway", "redis_all")
            if name in r["connections_peak"]
        )
        print(
            f"{r['requests']:>9}{statuses:>28}{r['elapsed_s']:>12.1f}{r['p50_ms']:>9.0f}{r['max_ms']:>9.0f}"
            f"  {connections or '-'}"
        )
        for status, sample in r["samples"].items():
            print(f"  {status}: {sample!r}")


def endpoints_scenario(ctx):
    server = ctx.start("gateway")
    models = ["bench", MULTI]
    # Which providers answer the several-endpoint model: each should have a share.
    providers = Counter()
    for _ in range(60):
        answer = requests.post(
            f"http://127.0.0.1:{server['port']}/v1/chat/completions",
            json={"model": MULTI, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {ctx.key}"},
            timeout=10,
        ).json()
        providers[answer.get("provider", "?")] += 1
    for model in models:
        ctx.throughput(server, 16, 2, model)  # warm-up
    rounds = []
    for _ in range(ctx.args.rounds):  # the two models in turn, so that drift hits both alike
        for model in models:
            rounds.append(
                {
                    "model": model,
                    "c16": ctx.throughput(server, 16, ctx.args.seconds, model),
                    "c1": ctx.throughput(server, 1, ctx.args.seconds / 2, model),
                }
            )
    ctx.stop(server)
    return {"providers": dict(providers), "rounds": rounds}


def report_endpoints(results, args):
    print(f"--endpoints {args.endpoints}: '{MULTI}' ({args.endpoints} endpoints) against 'bench' (one), in turn")
    print(f"answers of {MULTI} by provider: {results['providers']}")
    print(f"{'':14}{'requests/s, 16 conn.':>22}{'p50 ms, 1 conn.':>18}")
    by_model = {}
    for n, r in enumerate(results["rounds"]):
        by_model.setdefault(r["model"], []).append(r)
        errors = r["c16"]["errors"] + r["c1"]["errors"]
        print(
            f"{r['model']:14}{r['c16']['rps']:>22.1f}{r['c1']['p50_ms']:>18.2f}"
            f"  round {n // 2 + 1}" + (f", errors {errors}" if errors else "")
        )
    mean = {m: sum(r["c16"]["rps"] for r in rs) / len(rs) for m, rs in by_model.items()}
    p50 = {m: sum(r["c1"]["p50_ms"] for r in rs) / len(rs) for m, rs in by_model.items()}
    print(
        f"{MULTI} / bench: requests/s {mean[MULTI] / mean['bench']:.2f}x, "
        f"p50 {p50[MULTI] - p50['bench']:+.2f} ms (means of the rounds)"
    )


def run(args, env, key, up_port, tmp, processes):
    ctx = Ctx(args, env, key, up_port, tmp, processes)
    results = {}
    if args.workers:
        results["workers"] = workers_scenario(ctx)
    if args.endpoints:
        results["endpoints"] = endpoints_scenario(ctx)
    if args.burst:
        results["burst"] = burst_scenario(ctx)
    if args.open_streams:
        results["open_streams"] = open_streams_scenario(ctx)
    return results


def report(results, args, header):
    print(header)
    if "workers" in results:
        report_workers(results["workers"])
    if "endpoints" in results:
        report_endpoints(results["endpoints"], args)
    if "burst" in results:
        report_burst(results["burst"], args)
    if "open_streams" in results:
        report_open_streams(results["open_streams"], args)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"scenarios-{int(time.time())}.json").write_text(json.dumps(results, indent=2, default=str))
