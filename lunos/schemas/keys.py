"""Key management request bodies."""

from datetime import UTC, datetime

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from lunos.models.api_key import INFERENCE, LIMIT_RESETS, MANAGEMENT
from lunos.schemas import APP_ID, StrictBoolean, no_nul

INT32_MAX = 2**31 - 1  # requests_per_minute is a 32-bit column
LATEST_EXPIRY = datetime(9999, 1, 1, tzinfo=UTC)


def _app_ids(values):
    bad = [v for v in values if not APP_ID.fullmatch(v)]
    if bad:
        raise ValidationError(f"not app ids: {', '.join(map(repr, bad))}")


class Expiry(fields.AwareDateTime):
    """A moment in the future, before 9999, in UTC (SQLite keeps no offset)."""

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("is out of range") from None
        if moment <= datetime.now(UTC):
            raise ValidationError("must be in the future")
        if moment >= LATEST_EXPIRY:
            raise ValidationError("must be before 9999-01-01")
        return moment


class KeyFields(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(validate=[validate.Length(min=1, max=100), no_nul])
    expires_at = Expiry(allow_none=True, default_timezone=None)
    disabled = StrictBoolean()
    requests_per_minute = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, INT32_MAX))
    allowed_models = fields.List(
        fields.String(validate=[validate.Length(min=1, max=200), no_nul]),
        allow_none=True,
        validate=validate.Length(max=100),
    )
    allowed_apps = fields.List(fields.String(), allow_none=True, validate=[validate.Length(max=100), _app_ids])
    credit_limit_usd = fields.Decimal(allow_none=True, validate=validate.Range(min=0))  # rounded by usd_to_micros
    credit_limit_reset = fields.String(allow_none=True, validate=validate.OneOf(LIMIT_RESETS))


class KeyCreate(KeyFields):
    kind = fields.String(load_default=INFERENCE, validate=validate.OneOf((INFERENCE, MANAGEMENT)))

    @validates_schema
    def _reset_needs_limit(self, data, **kwargs):
        if data.get("credit_limit_reset") and data.get("credit_limit_usd") is None:
            raise ValidationError("needs credit_limit_usd", "credit_limit_reset")


class KeyUpdate(KeyFields):
    pass
