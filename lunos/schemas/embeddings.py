"""The embeddings request. Known parameters are type- and range-checked; unknown ones pass
through to the provider, made safe to encode (what the upstream's JSON encoder would choke on
is a 400 naming it, never a 500)."""

import re

from marshmallow import INCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

MAX_INPUTS = 2048  # items of one request, as OpenAI
MAX_TOKEN_ID = 2**31 - 1  # far beyond any vocabulary; keeps ids within what any encoder takes
MAX_DIMENSIONS = 65536
MAX_NESTING = 64  # of a passed-through value
ENCODING_FORMATS = ("float", "base64")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # JSON escapes of half a UTF-16 pair (a JS string cut mid-emoji)
INPUT_SHAPES = "a string, an array of strings, an array of token ids or an array of arrays of token ids"


def _text(value: str) -> str:
    """Sent on as the replacement character, as a browser's decoder would."""
    return LONE_SURROGATE.sub("\ufffd", value)


def _is_token_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_ID


def input_items(value) -> list:
    """The inputs of a valid ``input``, one per embedding: strings or lists of token ids."""
    if isinstance(value, str) or (value and _is_token_id(value[0])):
        return [value]
    return list(value)


class EmbeddingInput(fields.Field):
    """``input``: a string, or a non-empty array (at most MAX_INPUTS) of strings, of token ids,
    or of arrays of token ids; no empty string, no empty array."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            if not value:
                raise ValidationError("must not be an empty string")
            return _text(value)
        if not isinstance(value, list) or not value:
            raise ValidationError(f"must be {INPUT_SHAPES}, and not empty")
        if len(value) > MAX_INPUTS:
            raise ValidationError(f"must have at most {MAX_INPUTS} items, got {len(value)}")
        if isinstance(value[0], str):
            return [self._string(item, index) for index, item in enumerate(value)]
        if isinstance(value[0], list):
            return [self._tokens(item, index) for index, item in enumerate(value)]
        return self._tokens(value, None)

    @staticmethod
    def _string(item, index):
        if not isinstance(item, str) or not item:
            raise ValidationError({index: ["must be a non-empty string, as the first item is"]})
        return _text(item)

    @staticmethod
    def _tokens(item, index):
        """A non-empty array of token ids; an error names its place (input[i], input[i][j])."""

        def error(messages):
            return ValidationError({index: messages} if index is not None else messages)

        if not isinstance(item, list) or not item:
            raise error(["must be a non-empty array of token ids, as the first item is"])
        for position, token in enumerate(item):
            if not _is_token_id(token):
                raise error({position: [f"must be a token id, an integer from 0 to {MAX_TOKEN_ID}"]})
        return item


def _passed_through(value, param: str, depth: int = 0):
    """An unknown parameter's value as the upstream's encoder takes it: text without lone
    surrogates, integers within 64 bits, nesting bounded."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        raise ValidationError("integers must fit in 64 bits", param)
    if isinstance(value, (list, dict)) and depth >= MAX_NESTING:
        raise ValidationError(f"is nested more than {MAX_NESTING} levels deep", param)
    if isinstance(value, list):
        return [_passed_through(item, f"{param}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {_text(key): _passed_through(item, f"{param}.{key}", depth + 1) for key, item in value.items()}
    return value


class EmbeddingRequest(Schema):
    class Meta:
        unknown = INCLUDE

    model = fields.String(validate=validate.Length(min=1, max=200))
    input = EmbeddingInput(required=True)
    dimensions = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, MAX_DIMENSIONS))
    encoding_format = fields.String(allow_none=True, validate=validate.OneOf(ENCODING_FORMATS))
    user = fields.String(allow_none=True, validate=validate.Length(max=256))
    # Lunos: what to try when the requested model fails.
    fallback_model = fields.String(allow_none=True, validate=validate.Length(min=1, max=200))
    models = fields.List(
        fields.String(validate=validate.Length(min=1, max=200)), allow_none=True, validate=validate.Length(max=10)
    )

    @validates_schema
    def _a_model_is_named(self, data, **kwargs):
        if not data.get("model") and not data.get("models"):
            raise ValidationError("is required: the id of an embedding model of the catalog", "model")

    @post_load
    def _upstream_ready(self, data, **kwargs):
        # An optional parameter sent as null is absent (the SDKs' model_dump() sends nulls).
        known = {name: value for name, value in data.items() if name in self.fields and value is not None}
        if "user" in known:
            known["user"] = _text(known["user"])
        unknown = {_text(name): _passed_through(value, name) for name, value in data.items() if name not in self.fields}
        return {**unknown, **known}
