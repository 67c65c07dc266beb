"""The floor under any gevent relay: python bench/floor.py PORT UPSTREAM_PORT

No framework, no parsing: each request's body is forwarded to the upstream over a pooled
connection and the chunked answer is passed back byte for byte. bench/run.py --floor measures
the streams through it, for scale: what one gevent process costs per relayed event here.
"""

from gevent import monkey

monkey.patch_all()

import socket  # noqa: E402
import sys  # noqa: E402

from gevent.server import StreamServer  # noqa: E402

UPSTREAM = ("127.0.0.1", int(sys.argv[2]))
HEAD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: upstream\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n"
)
pool = []


def connect_upstream():
    sock = socket.create_connection(UPSTREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_head(sock, buffer):
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            return None, b""
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def handle(client, _address):
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = b""
    while True:
        head, rest = read_head(client, buffer)
        if head is None:
            return
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(rest) < length:
            rest += client.recv(65536)
        body, buffer = rest[:length], rest[length:]
        while True:  # a pooled connection the upstream has closed meanwhile is replaced
            upstream = pool.pop() if pool else connect_upstream()
            upstream.sendall(HEAD % len(body) + body)
            head, data = read_head(upstream, b"")  # the upstream streams with chunked framing
            if head is not None:
                break
        client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        tail = b""
        while True:
            if data:
                client.sendall(data)
                tail = (tail + data)[-7:]
                if tail == b"\r\n0\r\n\r\n":  # the last chunk, which may come in a read of its own
                    break
            data = upstream.recv(65536)
            if not data:
                return
        pool.append(upstream)


if __name__ == "__main__":
    StreamServer(("127.0.0.1", int(sys.argv[1])), handle, backlog=4096).serve_forever()
