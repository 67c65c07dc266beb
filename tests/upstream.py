"""A real HTTP server on loopback that plays an upstream provider.

It speaks the OpenAI Chat Completions and Embeddings and Anthropic Messages wire formats,
streaming included, and follows a script per upstream model: errors with Retry-After, slow
streams, hangs, and connections reset mid-stream (or, for embeddings, before any answer).
"""

import base64
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from tests.fake_http import LoopbackServer, send_json


@dataclass
class Reply:
    status: int = 200
    words: tuple = ("Hello", " from", " upstream")
    message: str = "upstream error"  # error text when status >= 400
    code: str | None = None  # ...and its OpenAI-style code, param and type
    param: str | None = None
    error_type: str | None = None
    retry_after: str | None = None
    wait_s: float = 0.0  # before answering at all
    chunk_delay_s: float = 0.0  # between streamed chunks
    reset_after: int | None = None  # stream: reset the connection after this many words; embeddings: at once
    error_after: int | None = None  # stream: send an error event after this many words
    usage: tuple | None = (11, 7)  # (prompt, completion) tokens reported; None: no usage
    # (embeddings report the prompt tokens only)
    usage_details: dict | None = None  # merged into the usage reported (cache buckets and such)
    tool_call: dict | None = None  # {"id", "name", "arguments"}: answer with a tool call


@dataclass
class Seen:
    path: str
    headers: dict
    body: dict


class FakeUpstream(LoopbackServer):
    def __init__(self):
        self.scripts = {}
        self.seen = []
        self.disconnected = []  # the "user" field of each request whose client went away
        self.lock = threading.Lock()
        super().__init__(_Handler)

    def script(self, model, *replies):
        """Answer requests for ``model`` with these replies in turn; the last one repeats."""
        self.scripts[model] = list(replies)

    def reset(self):
        with self.lock:
            self.scripts.clear()
            self.seen.clear()
            self.disconnected.clear()

    def next_reply(self, model):
        with self.lock:
            replies = self.scripts.get(model) or [Reply()]
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def wait_disconnect(self, user, timeout_s=5):
        """True once the request tagged ``user`` saw its client (the gateway) go away."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if user in self.disconnected:
                return True
            time.sleep(0.02)
        return False

    def requests_for(self, model):
        return [s for s in self.seen if s.body.get("model") == model]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    @property
    def fake(self):
        return self.server.fake

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.fake.lock:
            self.fake.seen.append(Seen(self.path, dict(self.headers), body))
        reply = self.fake.next_reply(body.get("model"))
        if reply.wait_s:
            time.sleep(reply.wait_s)
        anthropic = self.path.endswith("/messages")
        if reply.status >= 400:
            return self._error(reply, anthropic)
        try:
            if self.path.endswith("/embeddings"):
                if reply.reset_after is not None:
                    return self._reset()
                self._json(200, _embeddings(reply, body))
            elif body.get("stream"):
                self._stream(reply, body, anthropic)
            else:
                self._json(200, _anthropic_message(reply, body) if anthropic else _completion(reply, body))
        except (BrokenPipeError, ConnectionResetError):
            with self.fake.lock:
                self.fake.disconnected.append(body.get("user"))
            self.close_connection = True

    def _json(self, status, payload, headers=None):
        send_json(self, status, payload, headers)

    def _error(self, reply, anthropic):
        headers = {"Retry-After": reply.retry_after} if reply.retry_after else {}
        kind = reply.error_type or (
            "overloaded_error" if anthropic else "server_error" if reply.status >= 500 else "invalid_request_error"
        )
        payload = (
            {"type": "error", "error": {"type": kind, "message": reply.message}}
            if anthropic
            else {"error": {"message": reply.message, "type": kind, "param": reply.param, "code": reply.code}}
        )
        self._json(reply.status, payload, headers)

    def _send_event(self, payload, event=None):
        data = (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"
        raw = data.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
        self.wfile.flush()

    def _reset(self):
        # SO_LINGER 0: close() sends RST, like a crashed upstream or a cut connection.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _stream(self, reply, body, anthropic):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = _anthropic_events(reply, body) if anthropic else _openai_events(reply, body)
        words_sent = 0
        for kind, payload, event in events:
            if kind == "word":
                if reply.reset_after is not None and words_sent == reply.reset_after:
                    return self._reset()
                if reply.error_after is not None and words_sent == reply.error_after:
                    error = (
                        {"type": "error", "error": {"type": "overloaded_error", "message": "overloaded"}}
                        if anthropic
                        else {"error": {"message": "model overloaded", "type": "server_error"}}
                    )
                    self._send_event(json.dumps(error), "error" if anthropic else None)
                    break
                words_sent += 1
                if reply.chunk_delay_s:
                    time.sleep(reply.chunk_delay_s)
            self._send_event(payload if isinstance(payload, str) else json.dumps(payload), event)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _usage_openai(reply):
    prompt, completion = reply.usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        **(reply.usage_details or {}),
    }


def _completion(reply, body):
    message = {"role": "assistant", "content": "".join(reply.words)}
    finish = "stop"
    if reply.tool_call:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": reply.tool_call["id"],
                    "type": "function",
                    "function": {"name": reply.tool_call["name"], "arguments": reply.tool_call["arguments"]},
                }
            ],
        }
        finish = "tool_calls"
    answer = {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 1,
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if reply.usage:
        answer["usage"] = _usage_openai(reply)
    return answer


def _embeddings(reply, body):
    """OpenAI's embeddings answer: a vector per input (its length ``dimensions``, 8 by default),
    as floats or, with ``encoding_format: base64``, little-endian float32 in base64."""
    text = body["input"]
    inputs = [text] if isinstance(text, str) or (text and isinstance(text[0], int)) else text
    dimensions = body.get("dimensions") or 8
    data = []
    for index, item in enumerate(inputs):
        vector = [((len(str(item)) + index + d) % 7) / 7 for d in range(dimensions)]
        if body.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    answer = {"object": "list", "data": data, "model": body["model"]}
    if reply.usage:
        answer["usage"] = {"prompt_tokens": reply.usage[0], "total_tokens": reply.usage[0]}
    return answer


def _openai_events(reply, body):
    base = {"id": "chatcmpl-upstream", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}

    def chunk(delta, finish=None):
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield "meta", chunk({"role": "assistant", "content": ""}), None
    for word in reply.words:
        yield "word", chunk({"content": word}), None
    yield "meta", chunk({}, "stop"), None
    if reply.usage and (body.get("stream_options") or {}).get("include_usage"):
        yield "meta", {**base, "choices": [], "usage": _usage_openai(reply)}, None
    yield "meta", "[DONE]", None


def _anthropic_message(reply, body):
    content = [{"type": "text", "text": "".join(reply.words)}]
    stop = "end_turn"
    if reply.tool_call:
        content = [
            {
                "type": "tool_use",
                "id": reply.tool_call["id"],
                "name": reply.tool_call["name"],
                "input": json.loads(reply.tool_call["arguments"]),
            }
        ]
        stop = "tool_use"
    prompt, completion = reply.usage or (0, 0)
    return {
        "id": "msg_upstream",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion, **(reply.usage_details or {})},
    }


def _anthropic_events(reply, body):
    prompt, completion = reply.usage or (0, 0)
    yield (
        "meta",
        {
            "type": "message_start",
            "message": {
                "id": "msg_upstream",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": prompt, "output_tokens": 1, **(reply.usage_details or {})},
            },
        },
        "message_start",
    )
    yield "meta", {"type": "ping"}, "ping"
    if reply.tool_call:
        yield (
            "meta",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {
                    "type": "tool_use",
                    "id": reply.tool_call["id"],
                    "name": reply.tool_call["name"],
                    "input": {},
                },
            },
            "content_block_start",
        )
        arguments = reply.tool_call["arguments"]
        for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
            yield (
                "word",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                },
                "content_block_delta",
            )
        stop = "tool_use"
    else:
        yield (
            "meta",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        )
        for word in reply.words:
            yield (
                "word",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}},
                "content_block_delta",
            )
        stop = "end_turn"
    yield "meta", {"type": "content_block_stop", "index": 0}, "content_block_stop"
    yield (
        "meta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": completion},
        },
        "message_delta",
    )
    yield "meta", {"type": "message_stop"}, "message_stop"


class RefusingServer:
    """An upstream that accepts connections and resets them at once, counting them: a provider
    that is down behind its load balancer."""

    def __init__(self):
        self.connections = 0
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

    def close(self):
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
