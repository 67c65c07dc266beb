"""Extension objects, created unbound; create_app() binds them with init_app."""
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()

# Every timestamp is stored with its time zone (UTC).
Timestamp = DateTime(timezone=True)
