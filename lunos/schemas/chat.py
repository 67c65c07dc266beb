"""The Chat Completions request. Known parameters are type- and range-checked; unknown ones pass
through to the provider untouched. What one request may carry (messages, content parts, tools)
is checked first, before the schema spends time on it."""

from dataclasses import dataclass

from marshmallow import INCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from lunos.errors import InvalidRequest
from lunos.schemas import StrictBoolean, load

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# Each part type and the key that holds its payload: a string for text and refusal, an object
# for the others.
PART_TYPES = {
    "text": "text",
    "image_url": "image_url",
    "input_audio": "input_audio",
    "file": "file",
    "refusal": "refusal",
}
STRING_PAYLOADS = ("text", "refusal")
# Optional message fields in which null means absent: what SDKs send back on the next turn
# (``messages.append(choice.message.model_dump())``).
NULL_MEANS_ABSENT = ("name", "tool_calls", "tool_call_id", "refusal", "function_call", "audio")
MAX_TOOLS = 1024  # OpenAI takes 128


@dataclass(frozen=True)
class Bounds:
    """What one request may carry (LUNOS_MAX_MESSAGES, LUNOS_MAX_CONTENT_PARTS)."""

    messages: int
    parts: int


def _part_error(index, message, key=None):
    return ValidationError({index: {key: [message]} if key else [message]})


class Content(fields.Field):
    """A string, null, or a list of typed parts (text, image_url, input_audio, file, refusal)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValidationError("must be a string or a list of content parts")
        for index, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if not isinstance(kind, str) or kind not in PART_TYPES:
                raise _part_error(index, f"a content part needs a type, one of {', '.join(PART_TYPES)}")
            payload_key = PART_TYPES[kind]
            if payload_key not in part:
                raise _part_error(index, f"a {kind} part needs '{payload_key}'")
            payload = part[payload_key]
            if kind in STRING_PAYLOADS:
                if not isinstance(payload, str):
                    raise _part_error(index, "must be a string", payload_key)
            elif not isinstance(payload, dict):
                raise _part_error(index, "must be an object", payload_key)
            elif kind == "image_url" and not isinstance(payload.get("url"), str):
                raise _part_error(index, "needs a string 'url'", payload_key)
        return value


class StringOrList(fields.Field):
    def __init__(self, max_items, **kwargs):
        super().__init__(**kwargs)
        self.max_items = max_items

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return value
        if isinstance(value, list) and len(value) <= self.max_items and all(isinstance(v, str) for v in value):
            return value
        raise ValidationError(f"must be a string or a list of at most {self.max_items} strings")


class ToolChoice(fields.Field):
    """'none', 'auto', 'required', or an object with a ``type`` (a function's names it)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            if value not in ("none", "auto", "required"):
                raise ValidationError("must be 'none', 'auto', 'required' or an object")
            return value
        if not isinstance(value, dict):
            raise ValidationError("must be a string or an object")
        if not isinstance(value.get("type"), str):
            raise ValidationError({"type": ["must be a string"]})
        if value["type"] == "function":
            function = value.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise ValidationError({"function": ["must be an object with a string 'name'"]})
        return value


class FunctionCall(Schema):
    """An assistant's call of a function: its name and its arguments, as JSON text."""

    class Meta:
        unknown = INCLUDE

    name = fields.String(allow_none=True)
    arguments = fields.String(allow_none=True)


class ToolCall(Schema):
    class Meta:
        unknown = INCLUDE

    id = fields.String(allow_none=True)
    type = fields.String(allow_none=True)
    function = fields.Nested(FunctionCall, allow_none=True)


class Message(Schema):
    class Meta:
        unknown = INCLUDE

    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    content = Content(allow_none=True)
    name = fields.String(allow_none=True)
    tool_calls = fields.List(fields.Nested(ToolCall), allow_none=True)
    tool_call_id = fields.String(allow_none=True)
    refusal = fields.String(allow_none=True)
    function_call = fields.Nested(FunctionCall, allow_none=True)
    audio = fields.Dict(allow_none=True)

    @validates_schema
    def _content_required(self, data, **kwargs):
        if data["role"] in ("system", "developer", "user", "tool") and data.get("content") is None:
            raise ValidationError("is required for this role", "content")
        if data["role"] == "tool" and not data.get("tool_call_id"):
            raise ValidationError("is required for a tool message", "tool_call_id")

    @post_load
    def _drop_nulls(self, data, **kwargs):
        for name in NULL_MEANS_ABSENT:
            if name in data and data[name] is None:
                del data[name]
        return data


class FunctionDef(Schema):
    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    description = fields.String(allow_none=True)
    parameters = fields.Dict(allow_none=True)


class Tool(Schema):
    """A function tool, checked; other types (OpenAI's ``custom``) pass through to the provider,
    whose adapter refuses what it cannot translate."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True, validate=validate.Length(min=1, max=64))
    function = fields.Nested(FunctionDef)

    @validates_schema
    def _function_needs_its_definition(self, data, **kwargs):
        if data["type"] == "function" and "function" not in data:
            raise ValidationError("is required for a function tool", "function")


class ResponseFormat(Schema):
    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True, validate=validate.OneOf(["text", "json_object", "json_schema"]))


class StreamOptions(Schema):
    class Meta:
        unknown = INCLUDE

    include_usage = StrictBoolean(allow_none=True)


def _number(low, high):
    return fields.Float(allow_none=True, validate=validate.Range(low, high), allow_nan=False)


def _count(low, high=None):
    return fields.Integer(strict=True, allow_none=True, validate=validate.Range(low, high))


class ChatCompletionRequest(Schema):
    class Meta:
        unknown = INCLUDE

    model = fields.String(validate=validate.Length(min=1, max=200))
    messages = fields.List(fields.Nested(Message), required=True, validate=validate.Length(min=1))
    stream = StrictBoolean(allow_none=True)
    stream_options = fields.Nested(StreamOptions, allow_none=True)
    temperature = _number(0, 2)
    top_p = _number(0, 1)
    max_tokens = _count(1)
    max_completion_tokens = _count(1)
    stop = StringOrList(4, allow_none=True)
    n = _count(1, 128)
    presence_penalty = _number(-2, 2)
    frequency_penalty = _number(-2, 2)
    seed = fields.Integer(strict=True, allow_none=True)
    tools = fields.List(fields.Nested(Tool), allow_none=True)
    tool_choice = ToolChoice(allow_none=True)
    response_format = fields.Nested(ResponseFormat, allow_none=True)
    user = fields.String(allow_none=True, validate=validate.Length(max=256))
    # Lunos: what to try when the requested model fails.
    fallback_model = fields.String(allow_none=True, validate=validate.Length(min=1, max=200))
    models = fields.List(
        fields.String(validate=validate.Length(min=1, max=200)), allow_none=True, validate=validate.Length(max=10)
    )


_schema = ChatCompletionRequest()


def load_chat_request(body, bounds: Bounds) -> dict:
    """The request checked against ``bounds`` and then the schema: a dict, or InvalidRequest."""
    if isinstance(body, dict):
        check_bounds(body, bounds)
    return load(_schema, body)


def check_bounds(body: dict, bounds: Bounds) -> None:
    """Refuse, before any deeper look, a request that carries more than ``bounds`` allow."""
    messages = body.get("messages")
    if isinstance(messages, list):
        if len(messages) > bounds.messages:
            raise InvalidRequest(
                f"A request may carry at most {bounds.messages} messages; this one has {len(messages)}.",
                param="messages",
            )
        for index, message in enumerate(messages):
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list) and len(content) > bounds.parts:
                raise InvalidRequest(
                    f"A message may carry at most {bounds.parts} content parts; this one has {len(content)}.",
                    param=f"messages[{index}].content",
                )
    tools = body.get("tools")
    if isinstance(tools, list) and len(tools) > MAX_TOOLS:
        raise InvalidRequest(f"A request may carry at most {MAX_TOOLS} tools.", param="tools")
