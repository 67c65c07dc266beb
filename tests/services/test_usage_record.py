"""The usage event's typed record and its table agree, or start-up says which column differs."""

import pytest
import sqlalchemy as sa

from lunos.models import UsageEvent
from lunos.services.metering import UsageRecord, check_table


def test_the_record_matches_the_table():
    check_table(UsageEvent.__table__)


def test_a_column_the_record_lacks_stops_start_up():
    table = UsageEvent.__table__.to_metadata(sa.MetaData())
    table.append_column(sa.Column("region", sa.String(20)))
    with pytest.raises(RuntimeError, match=r"table only \['region'\]"):
        check_table(table)


def test_a_field_the_table_lacks_stops_start_up():
    table = sa.Table(
        "usage_events",
        sa.MetaData(),
        *[sa.Column(c.key, c.type) for c in UsageEvent.__table__.columns if c.key != "ttft_ms"],
    )
    with pytest.raises(RuntimeError, match=r"record only \['ttft_ms'\]"):
        check_table(table)
    assert "ttft_ms" in UsageRecord.__dataclass_fields__
