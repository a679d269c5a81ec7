"""Declarative base, and the engine and sessions of one app.

Each app owns a `Database` (built in `create_app`, kept in `app.extensions`); a request gets
one `Session` from it, closed at teardown. Writes go through `Database.transaction()`, which on
SQLite takes the write lock up front (`BEGIN IMMEDIATE`) so that concurrent gunicorn workers
wait on the busy timeout instead of failing a read-to-write lock upgrade.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC instant on every backend (SQLite stores naive values)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def utcnow() -> datetime:
    return datetime.now(UTC)


_write_intent: contextvars.ContextVar[bool] = contextvars.ContextVar("usher_write_intent", default=False)


def make_engine(url: str, sqlite_busy_timeout_ms: int = 10000) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": sqlite_busy_timeout_ms / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record):
            # Let SQLAlchemy, not the driver, emit BEGIN (the documented pysqlite recipe).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(sqlite_busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if _write_intent.get() else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=5)


@contextmanager
def outside_write_intent() -> Iterator[None]:
    """Run reads on another connection as plain reads, even inside a write transaction."""
    token = _write_intent.set(False)
    try:
        yield
    finally:
        _write_intent.reset(token)


class Database:
    """The engine and session factory of one app."""

    def __init__(self, url: str, sqlite_busy_timeout_ms: int = 10000):
        self.url = url
        self.engine = make_engine(url, sqlite_busy_timeout_ms)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self, session: Session | None = None) -> Iterator[Session]:
        """One write transaction: commit on success, roll back on any error."""
        own = session is None
        session = session or self.sessionmaker()
        if session.in_transaction():
            session.commit()  # end a read so that the write transaction starts afresh
        token = _write_intent.set(True)
        try:
            with session.begin():
                yield session
        finally:
            _write_intent.reset(token)
            if own:
                session.close()

    def dispose(self) -> None:
        self.engine.dispose()
