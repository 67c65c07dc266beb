"""A small gevent HTTP/1.1 load generator: keep-alive connections, pre-encoded requests.

Prints one JSON object with the figures of one scenario; bench/run.py drives it.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402


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


def throughput(port, path, key, connections, seconds):
    payload = request_bytes(port, path, key, {"model": "bench", "messages": [{"role": "user", "content": "hi"}]})
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["throughput", "streams"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--key", default="none")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    if args.scenario == "throughput":
        result = throughput(args.port, args.path, args.key, args.connections, args.seconds)
    else:
        result = streams(args.port, args.path, args.key, args.count)
    print(json.dumps(result))
