"""A small gevent HTTP/1.1 load generator: keep-alive connections, pre-encoded requests.

Prints one JSON object with the figures of one scenario; bench/run.py drives it.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.lock  # noqa: E402


def request_bytes(port, path, key, body):
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def read_response(sock, on_body_bytes=None):
    """Read one response; return its status. Handles Content-Length and chunked bodies."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before headers")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" in headers:
        need = int(headers["content-length"])
        while len(rest) < need:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed mid-body")
            rest += data
        return status
    while not rest.endswith(b"\r\n0\r\n\r\n") and rest != b"0\r\n\r\n":
        if on_body_bytes:
            on_body_bytes(rest)
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed mid-stream")
        rest += data
    if on_body_bytes:
        on_body_bytes(rest)
    return status


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else None


def raise_nofile():
    """As many descriptors as the hard limit allows: thousands of sockets per process."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def read_whole(sock):
    """Read one response; return its status and its body (chunked framing left in)."""
    body = [b""]

    def keep(data):
        body[0] = data

    status = read_response(sock, keep)
    return status, body[0]


def throughput(port, path, key, connections, seconds, model="bench"):
    payload = request_bytes(port, path, key, {"model": model, "messages": [{"role": "user", "content": "hi"}]})
    counts, errors, latencies = [0] * connections, [0], []
    deadline = time.monotonic() + seconds

    def worker(i):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            sock.sendall(payload)
            if read_response(sock) == 200:
                counts[i] += 1
                latencies.append(time.perf_counter() - started)
            else:
                errors[0] += 1
        sock.close()

    started = time.monotonic()
    gevent.joinall([gevent.spawn(worker, i) for i in range(connections)], raise_error=True)
    elapsed = time.monotonic() - started
    return {
        "requests": sum(counts),
        "errors": errors[0],
        "rps": sum(counts) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def streams(port, path, key, count):
    payload = request_bytes(
        port, path, key, {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    ttft, totals, failures = [], [], []

    def one():
        started = time.perf_counter()
        first = []

        def seen(body):
            if not first and b'"content":"word' in body.replace(b" ", b""):
                first.append(time.perf_counter() - started)

        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            sock.sendall(payload)
            status = read_response(sock, seen)
            sock.close()
            if status != 200 or not first:
                failures.append(f"status {status}")
                return
            ttft.append(first[0])
            totals.append(time.perf_counter() - started)
        except (OSError, ConnectionError) as exc:
            failures.append(str(exc))

    gevent.joinall([gevent.spawn(one) for _ in range(count)])
    return {
        "streams": count,
        "failures": len(failures),
        "failure_kinds": sorted(set(failures))[:5],
        "ttft_p50_ms": (percentile(ttft, 50) or 0) * 1000,
        "ttft_p99_ms": (percentile(ttft, 99) or 0) * 1000,
        "total_p50_ms": (percentile(totals, 50) or 0) * 1000,
        "total_p99_ms": (percentile(totals, 99) or 0) * 1000,
    }


def hold(port, path, key, count, quiet_s, pending):
    """``count`` streams, each of which the upstream keeps quiet for ``quiet_s`` before its
    answer, opened as fast as the server takes them with at most ``pending`` waiting for their
    headers (thousands of connects at once overflow the listen queue: the kernel drops them and
    the client retries after a second or more): what comes back on each (keep-alive comments,
    the answer, [DONE]), and when (wall clock, so that several processes' figures add up)."""
    gate = gevent.lock.BoundedSemaphore(pending)
    payload = request_bytes(
        port,
        path,
        key,
        {"model": "bench", "stream": True, "bench_quiet_s": quiet_s, "messages": [{"role": "user", "content": "hi"}]},
    )
    opened, waits, ended, keepalives, failures = [], [], [], [], []

    def one():
        gate.acquire()
        box, started = [b""], time.perf_counter()

        def seen(body):
            if not box[0]:
                opened.append(time.time())  # the status line and the headers are in
                waits.append(time.perf_counter() - started)
                gate.release()
            box[0] = body or b" "

        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=quiet_s + 90)
            sock.sendall(payload)
            status = read_response(sock, seen)
            sock.close()
        except (OSError, ConnectionError) as exc:
            failures.append(str(exc) or exc.__class__.__name__)
            return
        finally:
            if not box[0]:
                gate.release()
        body = box[0]
        if status != 200 or b"data: [DONE]" not in body or b"word" not in body:
            failures.append(f"status {status}: {body[:200]!r}")
            return
        ended.append(time.time())
        keepalives.append(body.count(b": keep-alive"))

    gevent.joinall([gevent.spawn(one) for _ in range(count)])
    return {
        "streams": count,
        "failures": len(failures),
        "failure_kinds": sorted(set(failures))[:5],
        "last_opened": max(opened, default=0),
        "open_p50_s": percentile(waits, 50) or 0,
        "open_max_s": max(waits, default=0),
        "first_ended": min(ended, default=0),
        "last_ended": max(ended, default=0),
        "keepalives_min": min(keepalives, default=0),
        "keepalives_max": max(keepalives, default=0),
    }


def burst(port, path, key, count, stream):
    """``count`` connections opened first; on a line on stdin, one request on each at once.
    Prints ``ready`` when the connections are up, and the answers by status at the end."""
    body = {"model": "bench", "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    payload = request_bytes(port, path, key, body)
    go, statuses, latencies, samples = gevent.event.Event(), Counter(), [], {}
    socks = [None] * count

    def connect(i):
        socks[i] = socket.create_connection(("127.0.0.1", port), timeout=120)

    gevent.joinall([gevent.spawn(connect, i) for i in range(count)], raise_error=True)
    print("ready", flush=True)
    sys.stdin.readline()  # the whole process waits here: nothing else is to run meanwhile

    def one(sock):
        go.wait()
        started = time.perf_counter()
        try:
            sock.sendall(payload)
            status, answer = read_whole(sock)
            sock.close()
            if stream and status == 200 and b"data: [DONE]" not in answer:
                status = "200 without [DONE]"
        except (OSError, ConnectionError) as exc:
            status, answer = str(exc) or exc.__class__.__name__, b""
        statuses[str(status)] += 1
        if status != 200:
            samples.setdefault(str(status), answer[-300:].decode("latin-1"))
        else:
            latencies.append(time.perf_counter() - started)

    greenlets = [gevent.spawn(one, sock) for sock in socks]
    gevent.sleep(0)  # every greenlet waits on the event
    go.set()
    gevent.joinall(greenlets)
    return {
        "requests": count,
        "statuses": dict(statuses),
        "samples": samples,
        "p50_ms": (percentile(latencies, 50) or 0) * 1000,
        "p99_ms": (percentile(latencies, 99) or 0) * 1000,
        "max_ms": (max(latencies, default=0)) * 1000,
    }


if __name__ == "__main__":
    raise_nofile()
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["throughput", "streams", "hold", "burst"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--key", default="none")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--model", default="bench")
    parser.add_argument("--quiet-s", type=float, default=30)
    parser.add_argument("--stream", action="store_true", help="burst: streamed requests")
    parser.add_argument("--pending", type=int, default=200, help="hold: most streams waiting for headers")
    args = parser.parse_args()
    if args.scenario == "throughput":
        result = throughput(args.port, args.path, args.key, args.connections, args.seconds, args.model)
    elif args.scenario == "hold":
        result = hold(args.port, args.path, args.key, args.count, args.quiet_s, args.pending)
    elif args.scenario == "burst":
        result = burst(args.port, args.path, args.key, args.count, args.stream)
    else:
        result = streams(args.port, args.path, args.key, args.count)
    print(json.dumps(result))
