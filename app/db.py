"""Declarative base, and the engine and sessions of one app.

Each app owns a `Database` (built in `create_app`, kept in `app.extensions["usher"]`). One way
per kind of access:

- hot reads: `Usher.reader()`, the request's Core connection in autocommit (no BEGIN/ROLLBACK);
- admin reads: `Usher.session()`, the request's ORM session, closed at teardown;
- hot writes: `Database.write()`, one Core transaction;
- admin writes: `Database.transaction(session)`, one ORM transaction.

Both write forms mark their connection as a writer (`usher_write` execution option): on SQLite
it then takes the write lock up front (`BEGIN IMMEDIATE`, behind a kernel lock shared by all
processes) so concurrent workers queue instead of failing a lock upgrade. Any other connection
(a read, even one made while a write is open) stays a plain autocommit reader.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    MetaData,
    Table,
    create_engine,
    event,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from app.config import Settings

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

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    __table__: ClassVar[Table]  # every model is mapped to a Table (DeclarativeBase says FromClause)
    type_annotation_map: ClassVar[dict] = {datetime: UTCDateTime()}


def utcnow() -> datetime:
    return datetime.now(UTC)


WRITER = {"usher_write": True}  # the execution option of write transactions


@dataclass(frozen=True)
class Pooling:
    """What each process may hold of PostgreSQL, and how long a statement or a lock wait may last
    (0: no limit). Ignored on SQLite."""

    pool_size: int = 5
    max_overflow: int = 5
    pool_timeout_seconds: float = 5.0
    statement_timeout_ms: int = 10000
    lock_timeout_ms: int = 5000

    @classmethod
    def of(cls, settings: Settings) -> Pooling:
        return cls(settings.database_pool_size, settings.database_max_overflow, settings.database_pool_timeout_seconds,
                   settings.database_statement_timeout_ms, settings.database_lock_timeout_ms)


def _prepare_threshold(raw: str | None) -> int | None:
    """`?prepare_threshold=N` of DATABASE_URL as psycopg means it (prepare a statement after N
    runs); empty, `none` or anything not a whole number: never prepare."""
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw)


def make_engine(url: str, sqlite_busy_timeout_ms: int = 10000, pooling: Pooling | None = None) -> Engine:
    """`hide_parameters`: a database error's message (in a traceback, the worker's log) never
    carries the statement's values, which can be hashes, sealed secrets or addresses."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": sqlite_busy_timeout_ms / 1000}, hide_parameters=True)

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
            # Writes take the write lock up front. Reads run in autocommit: each SELECT sees the
            # latest commit, and a request that only reads pays no BEGIN/COMMIT round trips.
            if conn.get_execution_options().get("usher_write"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    pooling = pooling or Pooling()
    parsed = make_url(url)
    # No server-side prepared statements unless DATABASE_URL asks (`?prepare_threshold=5`): a
    # transaction-mode PgBouncer hands each transaction to any server connection, where a
    # statement prepared on another one does not exist. Taken out of the URL, which would give
    # psycopg a string.
    threshold = _prepare_threshold(parsed.query.get("prepare_threshold"))  # type: ignore[arg-type]
    parsed = parsed.difference_update_query(["prepare_threshold"])
    engine = create_engine(parsed, pool_size=pooling.pool_size, max_overflow=pooling.max_overflow,
                           pool_timeout=pooling.pool_timeout_seconds,
                           connect_args={"prepare_threshold": threshold}, hide_parameters=True)
    settings = [f"SET statement_timeout = {int(pooling.statement_timeout_ms)}",
                f"SET lock_timeout = {int(pooling.lock_timeout_ms)}"]

    @event.listens_for(engine, "connect")
    def _postgres_connect(dbapi_connection, _record):
        # Session settings, once per new connection (no startup `options`: PgBouncer refuses
        # unknown startup parameters). Behind a transaction-mode PgBouncer they land on the server
        # connection that ran them; the README says to set them on the role there.
        with dbapi_connection.cursor() as cursor:
            for statement in settings:
                cursor.execute(statement)
        dbapi_connection.commit()

    # No pool_pre_ping: it costs a round trip per checkout. A connection that died with the
    # server fails its first use (503) and SQLAlchemy then invalidates the whole pool; the
    # PostgreSQL restart fault test shows recovery within a second.
    return engine


def private_file(path: str) -> None:
    """Create `path` owner-only (0600) if it does not exist, and make it so if it does. A path
    that cannot exist is left alone: using the database then fails as a 503, as if it were down."""
    try:
        if not os.path.exists(path):
            # Never open and close an existing database file: closing any descriptor of it drops
            # every POSIX lock this process holds on it, including SQLite's (disk I/O errors).
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        os.chmod(path, 0o600)
    except (FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError):
        pass


class WriterLock:
    """Serializes SQLite writers of all processes on one file with a kernel lock.

    SQLite's own busy handler polls with sleeps of up to 100 ms, so contended writers wait far
    longer than the lock is held; waiting on flock() wakes the next writer the moment the lock
    is free. A thread lock in front covers threads of one process (flock is per open file).
    """

    def __init__(self, database_path: str):
        self._path = database_path + ".writer-lock"
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # opened again after a fork
            self._fd, self._pid = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
        return self._fd

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._threads:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)


class Database:
    """The engine and session factory of one app."""

    def __init__(self, url: str, sqlite_busy_timeout_ms: int = 10000, pooling: Pooling | None = None):
        self.url = url
        self.engine = make_engine(url, sqlite_busy_timeout_ms, pooling)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        path = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if path and path != ":memory:":
            private_file(path)  # SQLite gives its -wal and -shm files the database file's mode
        self._writer_lock = WriterLock(path) if path and path != ":memory:" else None

    def _writer(self):
        return self._writer_lock.held() if self._writer_lock else nullcontext()

    @contextmanager
    def transaction(self, session: Session | None = None) -> Iterator[Session]:
        """One ORM write transaction (the request's session, or a new one): commit on success,
        roll back on any error."""
        own = session is None
        session = session or self.sessionmaker()
        if session.in_transaction():
            session.commit()  # end a read so that the write transaction starts afresh
        try:
            with self._writer(), session.begin():
                session.connection(execution_options=WRITER)  # procured as a writer: BEGIN IMMEDIATE
                yield session
        finally:
            if own:
                session.close()

    def reader(self) -> Connection:
        """A connection for reads only, in autocommit (SQLite reads are autocommit already)."""
        connection = self.engine.connect()
        if self.engine.dialect.name != "sqlite":
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection

    @property
    def one_statement_writes(self) -> bool:
        """Whether a write of several rows can be one statement (PostgreSQL's data-modifying
        CTEs; SQLite has none, and its writes cost no network round trips anyway)."""
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A Core connection in autocommit, for a write that is one statement (atomic by
        itself): one round trip, no BEGIN and COMMIT."""
        with self.engine.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One Core write transaction for hot paths: no ORM unit of work, the same locking."""
        with self._writer(), self.engine.connect() as connection:
            connection.execution_options(**WRITER)
            with connection.begin():
                yield connection

    def dispose(self) -> None:
        self.engine.dispose()
