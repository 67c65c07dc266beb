"""Key management request bodies."""
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from lunos.schemas import APP_ID
from lunos.models.api_key import INFERENCE, LIMIT_RESETS, MANAGEMENT


def _app_ids(values):
    bad = [v for v in values if not APP_ID.fullmatch(v)]
    if bad:
        raise ValidationError(f"not app ids: {', '.join(map(repr, bad))}")


class KeyFields(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(validate=validate.Length(min=1, max=100))
    expires_at = fields.AwareDateTime(allow_none=True, default_timezone=None)
    disabled = fields.Boolean()
    requests_per_minute = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1))
    allowed_models = fields.List(fields.String(validate=validate.Length(min=1, max=200)), allow_none=True,
                                 validate=validate.Length(max=100))
    allowed_apps = fields.List(fields.String(), allow_none=True, validate=[validate.Length(max=100), _app_ids])
    credit_limit_usd = fields.Decimal(allow_none=True, places=6, validate=validate.Range(min=0))
    credit_limit_reset = fields.String(allow_none=True, validate=validate.OneOf(LIMIT_RESETS))


class KeyCreate(KeyFields):
    kind = fields.String(load_default=INFERENCE, validate=validate.OneOf((INFERENCE, MANAGEMENT)))

    @validates_schema
    def _reset_needs_limit(self, data, **kwargs):
        if data.get("credit_limit_reset") and data.get("credit_limit_usd") is None:
            raise ValidationError("needs credit_limit_usd", "credit_limit_reset")


class KeyUpdate(KeyFields):
    pass
