"""Anthropic's Messages API, translated to and from Chat Completions both ways."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lunos.errors import InvalidRequest
from lunos.pricing import TokenUsage
from lunos.providers.base import ChunkStream, Provider, ProviderError
from lunos.providers.http import chunk_batches, read_json
from lunos.providers.openai import auth_headers, parse_event, read_api_key, read_stream, url
from lunos.schemas import bounded_json
from lunos.tokens import message_text

if TYPE_CHECKING:
    from lunos.catalog import Endpoint
    from lunos.providers.base import ProviderConfig
    from lunos.providers.http import UpstreamHTTP

API_VERSION = "2023-06-01"
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}
# Chat Completions parameters with no Messages API counterpart are dropped rather than sent.
DROPPED = {
    "n",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "stream_options",
    "parallel_tool_calls",
    "max_completion_tokens",
    "service_tier",
    "store",
    "modalities",
    "prediction",
    "reasoning_effort",
    "web_search_options",
    "audio",
}
# Tool-call arguments are JSON text inside the body; parsed here, nested at most this deep (the
# encoder takes 254 levels in all).
ARGUMENTS_DEPTH = 128


# Content parts with no Messages API counterpart here: refused, not silently dropped.
UNTRANSLATED_PARTS = ("input_audio", "file")


def _cannot_translate(what, param):
    return InvalidRequest(f"Anthropic models cannot take {what}.", param=param)


def _content_blocks(content, param):
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for index, part in enumerate(content or []):
        kind = part.get("type")
        if kind in UNTRANSLATED_PARTS:
            raise _cannot_translate(f"{kind} content parts", f"{param}[{index}]")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("data:"):
                header, _, data = url.partition(",")
                media_type = header[5:].split(";")[0]
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
    return blocks


def _tool_use(call):
    function = call.get("function") or {}
    try:
        arguments = bounded_json.loads((function.get("arguments") or "{}").encode(), max_depth=ARGUMENTS_DEPTH)
    except InvalidRequest:  # not JSON, or beyond what can be sent on as JSON: sent on as text
        arguments = {"_raw": function.get("arguments")}
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments}


def _append(messages, role, blocks):
    """Anthropic wants user and assistant turns to alternate: merge neighbours of one role."""
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


# Share of max_tokens a thinking budget may take, by reasoning effort.
THINKING_SHARE = {"low": 0.25, "medium": 0.5, "high": 0.75}
MIN_THINKING_BUDGET = 1024  # Anthropic's


def _thinking(effort, max_tokens):
    """Extended thinking with a budget within ``max_tokens`` (which must leave room for one)."""
    if max_tokens <= MIN_THINKING_BUDGET:
        raise InvalidRequest(
            f"Extended thinking needs max_tokens above {MIN_THINKING_BUDGET} on this model.", param="max_tokens"
        )
    return {"type": "enabled", "budget_tokens": max(MIN_THINKING_BUDGET, int(max_tokens * THINKING_SHARE[effort]))}


def _tools(tools):
    """Function tools as Anthropic tools; other types (OpenAI's custom tools) are refused."""
    translated = []
    for index, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise _cannot_translate("tools of a type other than 'function'", f"tools[{index}].type")
        function = tool["function"]
        translated.append(
            {
                "name": function["name"],
                "description": function.get("description") or "",
                "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
            }
        )
    return translated


def to_messages_request(model: Endpoint, body: dict[str, Any], max_output_tokens: int) -> dict[str, Any]:
    system, messages = [], []
    for index, message in enumerate(body.get("messages", [])):
        role = message.get("role")
        param = f"messages[{index}]"
        if role in ("system", "developer"):
            system.append(message_text(message.get("content")))
        elif role == "user":
            _append(messages, "user", _content_blocks(message.get("content"), f"{param}.content"))
        elif role == "assistant":
            blocks = _content_blocks(message.get("content"), f"{param}.content")
            blocks += [_tool_use(call) for call in message.get("tool_calls") or []]
            _append(messages, "assistant", blocks)
        elif role in ("tool", "function"):
            _append(
                messages,
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": message.get("tool_call_id"),
                        "content": message_text(message.get("content")),
                    }
                ],
            )

    request = {
        key: value
        for key, value in body.items()
        if key not in DROPPED and key not in ("messages", "model", "max_tokens", "stop", "tools", "tool_choice", "user")
    }
    max_tokens = max(body.get("max_completion_tokens") or 0, body.get("max_tokens") or 0) or max_output_tokens
    request.update(model=model.upstream_model, messages=messages, max_tokens=max_tokens)
    if body.get("reasoning_effort") in ("low", "medium", "high") and "thinking" not in body:
        request["thinking"] = _thinking(body["reasoning_effort"], max_tokens)
        request.pop("temperature", None)  # extended thinking takes the default temperature
        request.pop("top_k", None)
    if system:
        request["system"] = "\n\n".join(system)
    stop = body.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        request["tools"] = _tools(body["tools"])
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise _cannot_translate("a tool_choice of a type other than 'function'", "tool_choice.type")
        request["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
    elif choice in ("auto", "none"):
        request["tool_choice"] = {"type": choice}
    elif choice == "required":
        request["tool_choice"] = {"type": "any"}
    if body.get("user"):
        request["metadata"] = {"user_id": str(body["user"])}
    return request


def to_usage(usage: dict) -> dict:
    """Anthropic's disjoint buckets (uncached input, cache reads, cache writes, split into
    5-minute and 1-hour when it says so) as OpenAI-shaped usage."""

    def count(value):
        return value if isinstance(value, int) and value > 0 else 0

    written = count(usage.get("cache_creation_input_tokens"))
    split = usage.get("cache_creation") if isinstance(usage.get("cache_creation"), dict) else {}
    written_1h = min(count(split.get("ephemeral_1h_input_tokens")), written)
    return TokenUsage(
        uncached_input=count(usage.get("input_tokens")),
        cache_read=count(usage.get("cache_read_input_tokens")),
        cache_write=written - written_1h,
        cache_write_1h=written_1h,
        output=count(usage.get("output_tokens")),
    ).as_openai()


def to_completion(answer: dict[str, Any]) -> dict[str, Any]:
    text, tool_calls = [], []
    for block in answer.get("content", []):
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input", {}))},
                }
            )
    message = {"role": "assistant", "content": "".join(text) if text or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": answer.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.get("model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": STOP_REASONS.get(answer.get("stop_reason"), "stop"),
            }
        ],
        "usage": to_usage(answer.get("usage") or {}),
    }


class StreamTranslator:
    """Anthropic stream events in, chat.completion.chunk dicts out."""

    def __init__(self):
        self.base = {"id": None, "object": "chat.completion.chunk", "created": int(time.time()), "model": None}
        self.usage = {}
        self.tool_index = {}  # content block index -> tool_calls index

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            **self.base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    def translate(self, event: dict[str, Any]) -> Iterator[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message", {})
            self.base.update(id=message.get("id"), model=message.get("model"))
            self.usage.update(message.get("usage") or {})
            yield self.chunk({"role": "assistant", "content": ""})
        elif kind == "content_block_start":
            block = event.get("content_block", {})
            if block.get("type") == "tool_use":
                index = self.tool_index.setdefault(event.get("index"), len(self.tool_index))
                yield self.chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": block.get("id"),
                                "type": "function",
                                "function": {"name": block.get("name"), "arguments": ""},
                            }
                        ]
                    }
                )
        elif kind == "content_block_delta":
            delta = event.get("delta", {})
            if delta.get("type") == "text_delta":
                yield self.chunk({"content": delta.get("text", "")})
            elif delta.get("type") == "thinking_delta":
                yield self.chunk({"reasoning": delta.get("thinking", "")})
            elif delta.get("type") == "input_json_delta":
                index = self.tool_index.get(event.get("index"), 0)
                yield self.chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": delta.get("partial_json", "")}}]}
                )
        elif kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason:
                yield self.chunk({}, STOP_REASONS.get(reason, "stop"))
        elif kind == "message_stop":
            yield {**self.base, "choices": [], "usage": to_usage(self.usage)}
        elif kind == "error":
            error = event.get("error") or {}
            raise ProviderError(f"upstream error mid-stream: {error.get('message', error)}", retryable=True)


class AnthropicProvider(Provider):
    kind = "anthropic"
    default_auth_header = "x-api-key"
    supports = frozenset({"tools"})  # the rest of catalog.FEATURES is dropped (DROPPED)

    def __init__(self, config: ProviderConfig, http: UpstreamHTTP):
        super().__init__(config, http)
        self._messages_url = url(config, "/messages")

    @staticmethod
    def with_reasoning(body: dict, endpoint: Endpoint) -> dict:
        """Extended thinking, with a budget within max_tokens (to_messages_request)."""
        return {**body, "reasoning_effort": "high"}

    def _post(self, model, body, stream):
        headers = {
            "Content-Type": "application/json",
            "anthropic-version": API_VERSION,
            **self.config.headers,
            **auth_headers(self.config, read_api_key(self.config)),
        }
        request = to_messages_request(model, body, model.max_output_tokens)
        if stream:
            request["stream"] = True
        return self.http.post_json(
            self._messages_url, request, headers=headers, timeout_s=self.config.timeout_s, stream=stream
        )

    def complete(self, model: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        response = self._post(model, body, stream=False)
        answer = read_json(response)
        if not isinstance(answer, dict) or "content" not in answer:
            raise ProviderError(f"upstream answered without content: {str(answer)[:200]}", retryable=True)
        return to_completion(answer)

    def open_stream(self, model: Endpoint, body: dict[str, Any]) -> ChunkStream:
        response = self._post(model, body, stream=True)
        return ChunkStream(read_stream(response, self._chunks(response)), response)

    def _chunks(self, response):
        translator, stopped = StreamTranslator(), False

        def convert(_event, data):
            nonlocal stopped
            if stopped:
                return ()  # read to the end so the connection goes back to the pool
            event = parse_event(data)
            stopped = event.get("type") == "message_stop"
            return translator.translate(event)

        yield from chunk_batches(response, self.http.quiet_s, self.config.timeout_s, convert)
        if not stopped:
            raise ProviderError("stream ended before message_stop", retryable=True)
