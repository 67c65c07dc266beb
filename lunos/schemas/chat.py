"""The Chat Completions request. Known parameters are type- and range-checked; unknown ones pass
through to the provider untouched."""
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
PART_TYPES = {"text": "text", "image_url": "image_url", "input_audio": "input_audio", "file": "file",
              "refusal": "refusal"}


class Content(fields.Field):
    """A string, null, or a list of typed parts (text, image_url, input_audio, file, refusal)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValidationError("must be a string or a list of content parts")
        for index, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") not in PART_TYPES:
                raise ValidationError({index: [f"a content part needs a type, one of {', '.join(PART_TYPES)}"]})
            payload_key = PART_TYPES[part["type"]]
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise ValidationError({index: ["a text part needs a string 'text'"]})
            if part["type"] == "image_url" and not isinstance((part.get("image_url") or {}).get("url"), str):
                raise ValidationError({index: ["an image_url part needs image_url.url"]})
            if payload_key not in part:
                raise ValidationError({index: [f"a {part['type']} part needs '{payload_key}'"]})
        return value


class StringOrList(fields.Field):
    def __init__(self, max_items, **kwargs):
        super().__init__(**kwargs)
        self.max_items = max_items

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value) and len(value) <= self.max_items:
            return value
        raise ValidationError(f"must be a string or a list of at most {self.max_items} strings")


class StrictBoolean(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            return value
        raise ValidationError("must be true or false")


class StringOrObject(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (str, dict)):
            return value
        raise ValidationError("must be a string or an object")


class Message(Schema):
    class Meta:
        unknown = INCLUDE

    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    content = Content(allow_none=True)
    name = fields.String()
    tool_calls = fields.List(fields.Dict())
    tool_call_id = fields.String()

    @validates_schema
    def _content_required(self, data, **kwargs):
        if data["role"] in ("system", "developer", "user", "tool") and data.get("content") is None:
            raise ValidationError("is required for this role", "content")
        if data["role"] == "tool" and not data.get("tool_call_id"):
            raise ValidationError("is required for a tool message", "tool_call_id")


class FunctionDef(Schema):
    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    description = fields.String()
    parameters = fields.Dict()


class Tool(Schema):
    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True, validate=validate.OneOf(["function"]))
    function = fields.Nested(FunctionDef, required=True)


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
    tool_choice = StringOrObject(allow_none=True)
    response_format = fields.Nested(ResponseFormat, allow_none=True)
    user = fields.String(allow_none=True, validate=validate.Length(max=256))
    # Lunos: what to try when the requested model fails.
    fallback_model = fields.String(allow_none=True, validate=validate.Length(min=1, max=200))
    models = fields.List(fields.String(validate=validate.Length(min=1, max=200)), allow_none=True,
                         validate=validate.Length(max=10))

    @validates_schema
    def _choice_needs_known_value(self, data, **kwargs):
        choice = data.get("tool_choice")
        if isinstance(choice, str) and choice not in ("none", "auto", "required"):
            raise ValidationError("must be 'none', 'auto', 'required' or an object", "tool_choice")
