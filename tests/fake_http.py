"""What the loopback fakes share: a threaded server on a free loopback port, JSON answers."""

import json
import socket
import threading
from http.server import ThreadingHTTPServer


def stop(server):
    """Stop a socketserver's serve_forever at once: shutdown() alone waits out its poll interval
    (0.5 s). Shutting the listening socket down makes it readable, which wakes the loop to see
    the request to stop."""
    stopping = threading.Thread(target=server.shutdown)
    stopping.start()
    try:
        server.socket.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    stopping.join()
    server.server_close()


class LoopbackServer:
    """Serves ``handler`` on 127.0.0.1 in a thread; the handler reaches this object as ``server.fake``."""

    def __init__(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.fake = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        stop(self.server)


def send_json(handler, status, payload, headers=None):
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)
