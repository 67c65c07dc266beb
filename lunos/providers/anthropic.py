"""Anthropic's Messages API, translated to and from Chat Completions both ways."""
import json
import time

from lunos.errors import InvalidRequest
from lunos.providers.base import ChunkStream, Provider, ProviderError
from lunos.providers.http import chunk_batches, read_json
from lunos.providers.openai import parse_event, read_api_key, read_stream
from lunos.schemas import bounded_json
from lunos.tokens import message_text

API_VERSION = "2023-06-01"
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                "tool_use": "tool_calls", "pause_turn": "stop", "refusal": "content_filter"}
# Chat Completions parameters with no Messages API counterpart are dropped rather than sent.
DROPPED = {"n", "presence_penalty", "frequency_penalty", "seed", "logit_bias", "logprobs",
           "top_logprobs", "response_format", "stream_options", "parallel_tool_calls",
           "max_completion_tokens", "service_tier", "store", "modalities", "prediction",
           "reasoning_effort", "web_search_options", "audio"}
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
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media_type,
                                                           "data": data}})
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


def _tools(tools):
    """Function tools as Anthropic tools; other types (OpenAI's custom tools) are refused."""
    translated = []
    for index, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise _cannot_translate("tools of a type other than 'function'", f"tools[{index}].type")
        function = tool["function"]
        translated.append({"name": function["name"], "description": function.get("description") or "",
                           "input_schema": function.get("parameters") or {"type": "object", "properties": {}}})
    return translated


def to_messages_request(model, body, max_output_tokens):
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
            _append(messages, "user", [{"type": "tool_result", "tool_use_id": message.get("tool_call_id"),
                                        "content": message_text(message.get("content"))}])

    request = {key: value for key, value in body.items()
               if key not in DROPPED and key not in ("messages", "model", "max_tokens", "stop", "tools",
                                                      "tool_choice", "user")}
    request.update(model=model.upstream_model, messages=messages,
                   max_tokens=body.get("max_completion_tokens") or body.get("max_tokens") or max_output_tokens)
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


def to_usage(usage):
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cached + (usage.get("cache_creation_input_tokens") or 0)
    completion = usage.get("output_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}}


def to_completion(answer):
    text, tool_calls = [], []
    for block in answer.get("content", []):
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            tool_calls.append({"id": block.get("id"), "type": "function",
                               "function": {"name": block.get("name"),
                                            "arguments": json.dumps(block.get("input", {}))}})
    message = {"role": "assistant", "content": "".join(text) if text or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": answer.get("id"), "object": "chat.completion", "created": int(time.time()),
            "model": answer.get("model"),
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": STOP_REASONS.get(answer.get("stop_reason"), "stop")}],
            "usage": to_usage(answer.get("usage") or {})}


class StreamTranslator:
    """Anthropic stream events in, chat.completion.chunk dicts out."""

    def __init__(self):
        self.base = {"id": None, "object": "chat.completion.chunk", "created": int(time.time()), "model": None}
        self.usage = {}
        self.tool_index = {}  # content block index -> tool_calls index

    def chunk(self, delta, finish_reason=None):
        return {**self.base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                          "finish_reason": finish_reason}]}

    def translate(self, event):
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
                yield self.chunk({"tool_calls": [{"index": index, "id": block.get("id"), "type": "function",
                                                  "function": {"name": block.get("name"), "arguments": ""}}]})
        elif kind == "content_block_delta":
            delta = event.get("delta", {})
            if delta.get("type") == "text_delta":
                yield self.chunk({"content": delta.get("text", "")})
            elif delta.get("type") == "input_json_delta":
                index = self.tool_index.get(event.get("index"), 0)
                yield self.chunk({"tool_calls": [{"index": index,
                                                  "function": {"arguments": delta.get("partial_json", "")}}]})
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

    def _post(self, model, body, stream):
        headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION, **self.config.headers}
        key = read_api_key(self.config)
        if key:
            headers["x-api-key"] = key
        request = to_messages_request(model, body, model.max_output_tokens)
        if stream:
            request["stream"] = True
        return self.http.post_json(f"{self.config.base_url}/messages", request, headers=headers,
                                   timeout_s=self.config.timeout_s, stream=stream)

    def complete(self, model, body):
        response = self._post(model, body, stream=False)
        answer = read_json(response)
        if not isinstance(answer, dict) or "content" not in answer:
            raise ProviderError(f"upstream answered without content: {str(answer)[:200]}", retryable=True)
        return to_completion(answer)

    def open_stream(self, model, body):
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
