"""Sign-in persistence: one-time codes, consumers and sessions, as the grants need them.

`SignInStore` names the operations by what they do for a grant (start a guest, verify a code
and sign in, find or create a consumer, start a session with the guest upgrade); the grant
keeps the protocol (what a request may ask, which code is right, signing the tokens).

`GenericSignInStore` runs on every database: one Core write transaction that locks what it
decides on (`SELECT … FOR UPDATE`; SQLite's write lock is held already) and writes the rows with
their events. `PostgresSignInStore` first tries PostgreSQL's fast paths, taken only when no guest
is upgraded and no webhook endpoint of the tenant listens to `consumer.created` or
`session.created`: a guest is one statement in autocommit, a verify two (read the code with its
consumer; then consume it *only if it is still the code compared and still live*, create the
consumer if needed and start the session, one data-modifying CTE). A fast path that loses a race
(the code consumed, replaced or spent in between, the consumer created or deleted meanwhile)
writes nothing and the generic path decides, exactly as if it had run alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import (
    Connection,
    bindparam,
    exists,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from app.errors import AUTHENTICATION_REQUIRED, ApiError
from app.events import (
    ConsumerCreated,
    ConsumerMerged,
    Event,
    SessionCreated,
    SessionRevoked,
)
from app.models import AuthSession, Consumer, OtpCode, new_id
from app.otp.check import NO_CODE
from app.otp.service import MAX_ATTEMPTS_PER_CODE
from app.services.sessions import (
    SESSIONS,
    insert_guest_and_session,
    insert_session,
    new_session_row,
)
from app.stores.queues import move_guest_places

if TYPE_CHECKING:
    from app.db import Database
    from app.otp.check import PresentedCode
    from app.otp.identifiers import Identifier
    from app.security.callers import OrganizationSnapshot
    from app.services.events import Events
    from app.tokens.service import Generation, Kids

#: The events a first sign-in may record; a fast path is taken only when none is listened to.
SIGN_IN_EVENTS = (ConsumerCreated, SessionCreated)

#: A started session: its row (stored) and the generation its first pair is signed from.
Started = tuple[AuthSession, "Generation"]


@dataclass(frozen=True)
class SignIn:
    """What a grant asks a sign-in to start: everything but the consumer, which the store finds
    or makes. `guest` holds the verified access-token claims of the guest it upgrades, if any."""

    organization: OrganizationSnapshot
    mode: str
    session_type: str
    kids: Kids
    app_secret: str
    guest: dict | None = None

    def session_row(self, consumer_id: str, now: datetime) -> Started:
        """The new session of `consumer_id` (not yet stored) and its first generation."""
        return new_session_row(self.kids, self.app_secret, self.organization, self.mode, consumer_id,
                               self.session_type, now)


class SignInStore(Protocol):
    """The persistence of sign-ins. The first two run their own transaction(s); the last three
    run inside the caller's write transaction (`Database.write()`), for grants that lock rows of
    their own first (external identities, plugins' codes)."""

    def start_guest(self, sign_in: SignIn, now: datetime) -> Started:
        """A new guest consumer and its session (`consumer.created`, `session.created`)."""
        ...

    def verify_code_and_sign_in(self, sign_in: SignIn, identifier: Identifier, presented: PresentedCode,
                                clock: Callable[[], datetime]) -> Started:
        """Consume the identifier's code if `presented` is it and it is live, and sign its
        consumer in (created on first sign-in; the guest upgraded). Otherwise raise
        `ApiError(otp_invalid | otp_expired)` after counting a wrong try against the code. The
        clock is read once the code is read (locked, on the generic path)."""
        ...

    def find_or_create_consumer(self, connection: Connection, organization_id: str, mode: str, now: datetime,
                                **identity: str) -> str:
        """The consumer with this email or phone in the tenant, created on first sign-in."""
        ...

    def create_consumer(self, connection: Connection, organization_id: str, mode: str, now: datetime,
                        **identity: str | None) -> str:
        """A new identified consumer (`cons_…`)."""
        ...

    def sign_in(self, connection: Connection, consumer_id: str, sign_in: SignIn, now: datetime) -> Started:
        """The guest upgrade (401 if the guest's session is no longer live) and the new session."""
        ...


class GenericSignInStore:
    """Every database: one locked Core write transaction per operation (see the module)."""

    def __init__(self, db: Database, events: Events):
        self.db, self.events = db, events

    def start_guest(self, sign_in: SignIn, now: datetime) -> Started:
        started = sign_in.session_row(new_id("guest"), now)
        self._write_guest(started[0], now)
        return started

    def _write_guest(self, row: AuthSession, now: datetime) -> None:
        with self.db.write() as connection:
            insert_consumer(connection, self.events, "guest", row.organization_id, row.mode, now,
                            consumer_id=row.consumer_id)
            insert_session(connection, row)
            self.events.record(connection, session_created(row))

    def verify_code_and_sign_in(self, sign_in: SignIn, identifier: Identifier, presented: PresentedCode,
                                clock: Callable[[], datetime]) -> Started:
        started: Started | None = None
        with self.db.write() as connection:
            code = connection.execute(_SELECT_CODE, {"organization_id": sign_in.organization.id,
                                                     "mode": sign_in.mode, "identifier": identifier.value}).first()
            now = clock()
            outcome = presented.outcome(code, now)
            if outcome == "otp_invalid":
                _count_wrong_try(connection, code, sign_in, identifier.value)
            elif outcome is None:
                assert code is not None  # the right code has a row
                connection.execute(_CONSUME, {"code_id": code.id, "now": now})
                pending: list[Event] = []
                consumer_id = _find_or_create(connection, pending, sign_in.organization.id, sign_in.mode, now,
                                              **{identifier.kind: identifier.value})
                started = _sign_in(connection, pending, consumer_id, sign_in, now)
                self._record(connection, pending)
        if outcome:  # after the commit: a wrong try stays counted
            raise ApiError(outcome)
        assert started is not None  # no failed outcome: the session was made
        return started

    def find_or_create_consumer(self, connection: Connection, organization_id: str, mode: str, now: datetime,
                                **identity: str) -> str:
        return find_or_create_consumer(connection, self.events, organization_id, mode, now, **identity)

    def create_consumer(self, connection: Connection, organization_id: str, mode: str, now: datetime,
                        **identity: str | None) -> str:
        return insert_consumer(connection, self.events, "cons", organization_id, mode, now, **identity)

    def sign_in(self, connection: Connection, consumer_id: str, sign_in: SignIn, now: datetime) -> Started:
        pending: list[Event] = []
        started = _sign_in(connection, pending, consumer_id, sign_in, now)
        self._record(connection, pending)
        return started

    def _record(self, connection: Connection, pending: list[Event]) -> None:
        """The sign-in's events, in the order they happened, in its transaction."""
        for event in pending:
            self.events.record(connection, event)


class PostgresSignInStore(GenericSignInStore):
    """PostgreSQL: the fast paths when nothing else must be written, else the generic paths."""

    def start_guest(self, sign_in: SignIn, now: datetime) -> Started:
        row, generation = sign_in.session_row(new_id("guest"), now)
        with self.db.autocommit() as connection:
            if not self.events.listens_to_any(connection, row.organization_id, row.mode, *SIGN_IN_EVENTS):
                insert_guest_and_session(connection, row)  # both rows, one round trip
                return row, generation
        self._write_guest(row, now)
        return row, generation

    def verify_code_and_sign_in(self, sign_in: SignIn, identifier: Identifier, presented: PresentedCode,
                                clock: Callable[[], datetime]) -> Started:
        if sign_in.guest is None:
            started = self._in_two_round_trips(sign_in, identifier, presented, clock)
            if started is not None:
                return started
        return super().verify_code_and_sign_in(sign_in, identifier, presented, clock)

    def _in_two_round_trips(self, sign_in: SignIn, identifier: Identifier, presented: PresentedCode,
                            clock: Callable[[], datetime]) -> Started | None:
        """The started session, an `ApiError` for a wrong or dead code, or None when the generic
        path must decide (someone listens, or the code or consumer changed since the read)."""
        organization_id, mode = sign_in.organization.id, sign_in.mode
        with self.db.autocommit() as connection:
            if self.events.listens_to_any(connection, organization_id, mode, *SIGN_IN_EVENTS):
                return None
            code = connection.execute(_READ_CODE[identifier.kind], {
                "organization_id": organization_id, "mode": mode, "identifier": identifier.value}).first()
            now = clock()
            outcome = presented.outcome(code, now)
            if outcome == "otp_invalid":
                _count_wrong_try(connection, code, sign_in, identifier.value)
            if outcome:
                raise ApiError(outcome)
            assert code is not None  # the right code has a row
            row, generation = sign_in.session_row(code.consumer_id or new_id("cons"), now)
            statement = _CONSUME_AND_START if code.consumer_id else _CONSUME_CREATE_AND_START[identifier.kind]
            try:
                made = connection.execute(statement, {
                    "code_id": code.id, "compared_hash": code.code_hash, "attempt_limit": MAX_ATTEMPTS_PER_CODE,
                    "now": now, "value": identifier.value,
                    **{f"session_{column.key}": getattr(row, column.key) for column in SESSIONS.columns}}).first()
            except IntegrityError:  # the consumer was created (or deleted) meanwhile: nothing was written
                return None
        if made is None:  # the code changed meanwhile: nothing was written
            return None
        return row, generation


# -- Inside a caller's transaction: consumers, the guest upgrade, the session -------------------

def insert_consumer(connection: Connection, events: Events, prefix: str, organization_id: str, mode: str,
                    now: datetime, consumer_id: str | None = None, **identity: str | None) -> str:
    """A new consumer (`guest_…` or `cons_…`, or the id given), by one Core insert; returns its id."""
    pending: list[Event] = []
    consumer_id = _insert_consumer(connection, pending, prefix, organization_id, mode, now, consumer_id, **identity)
    for event in pending:
        events.record(connection, event)
    return consumer_id


def find_or_create_consumer(connection: Connection, events: Events, organization_id: str, mode: str,
                            now: datetime, **identity: str) -> str:
    """The id of the consumer with this email or phone in the tenant, created on first sign-in."""
    pending: list[Event] = []
    consumer_id = _find_or_create(connection, pending, organization_id, mode, now, **identity)
    for event in pending:
        events.record(connection, event)
    return consumer_id


def session_created(row: AuthSession) -> SessionCreated:
    """The `session.created` event of a new session row."""
    return SessionCreated(organization_id=row.organization_id, mode=row.mode, session_id=row.id,
                          consumer_id=row.consumer_id, session_type=row.type)


def _insert_consumer(connection: Connection, pending: list[Event], prefix: str, organization_id: str, mode: str,
                     now: datetime, consumer_id: str | None = None, **identity: str | None) -> str:
    consumer_id = consumer_id or new_id(prefix)
    connection.execute(_INSERT_CONSUMER, {"id": consumer_id, "organization_id": organization_id, "mode": mode,
                                          "created_at": now, "email": identity.get("email"),
                                          "phone": identity.get("phone")})
    pending.append(ConsumerCreated(organization_id=organization_id, mode=mode, consumer_id=consumer_id,
                                   guest=prefix == "guest"))
    return consumer_id


def _find_or_create(connection: Connection, pending: list[Event], organization_id: str, mode: str, now: datetime,
                    **identity: str) -> str:
    (column, value), = identity.items()
    found = connection.execute(_FIND[column], {"organization_id": organization_id, "mode": mode,
                                               "value": value}).scalar()
    if found is not None:
        return found
    return _insert_consumer(connection, pending, "cons", organization_id, mode, now, **identity)


def _sign_in(connection: Connection, pending: list[Event], consumer_id: str, sign_in: SignIn,
             now: datetime) -> Started:
    """The guest upgrade, if any, and the new session row; their events appended to `pending`."""
    if sign_in.guest is not None:
        _upgrade_guest(connection, pending, sign_in, consumer_id, now)
    row, generation = sign_in.session_row(consumer_id, now)
    insert_session(connection, row)
    pending.append(session_created(row))
    return row, generation


def _upgrade_guest(connection: Connection, pending: list[Event], sign_in: SignIn, consumer_id: str,
                   now: datetime) -> None:
    """End the upgrading guest's session, or 401 if it is no longer live; then merge the guest
    into the consumer and end its other sessions.

    The first step is a conditional UPDATE inside the caller's transaction: of concurrent sign-ins
    carrying one guest token exactly one ends that session; the others see no row change, answer
    401 and, their transaction rolled back, consume nothing."""
    claims = sign_in.guest
    assert claims is not None
    guest_id = claims["consumerId"]
    claimed = connection.execute(_CLAIM_GUEST_SESSION, {
        "now": now, "guest_session_id": claims["sessionId"], "guest_id": guest_id,
        "guest_organization_id": claims["organizationId"]}).all()
    pending.extend(_revoked(claimed))
    if len(claimed) != 1:
        raise ApiError(AUTHENTICATION_REQUIRED)
    move_guest_places(connection, guest_id, consumer_id)
    pending.extend(_revoked(connection.execute(_END_GUEST_SESSIONS, {"now": now, "guest_id": guest_id}).all()))
    connection.execute(_MERGED_INTO, {"guest_id": guest_id, "consumer_id": consumer_id})
    pending.append(ConsumerMerged(organization_id=sign_in.organization.id, mode=sign_in.mode, guest_id=guest_id,
                                  consumer_id=consumer_id))


def _revoked(rows: Any) -> list[Event]:
    return [SessionRevoked(organization_id=row.organization_id, mode=row.mode, session_id=row.id,
                           consumer_id=row.consumer_id, reason="upgraded") for row in rows]


def _count_wrong_try(connection: Connection, code: Any, sign_in: SignIn, identifier: str) -> None:
    """Count a wrong try against the code just compared, if it is still that code and still live.
    One conditional UPDATE whether there is a live code, a dead one or none, so that a wrong
    code costs the same statements whatever the identifier's history (no timing tells)."""
    connection.execute(_WRONG_TRY, {"code_organization_id": sign_in.organization.id, "code_mode": sign_in.mode,
                                    "code_identifier": identifier, "attempt_limit": MAX_ATTEMPTS_PER_CODE,
                                    "compared_hash": code.code_hash if code is not None else NO_CODE})


# -- Statements, built once -------------------------------------------------------------------

CONSUMERS = Consumer.__table__
_CODES = OtpCode.__table__
_FIND = {column: select(CONSUMERS.c.id).where(CONSUMERS.c.organization_id == bindparam("organization_id"),
                                              CONSUMERS.c.mode == bindparam("mode"),
                                              CONSUMERS.c[column] == bindparam("value"))
         for column in ("email", "phone")}
_INSERT_CONSUMER = insert(CONSUMERS)

# The guest upgrade. (Bind names are no column's name: an UPDATE would take such a parameter as a value to SET.)
_REVOKED = (SESSIONS.c.id, SESSIONS.c.consumer_id, SESSIONS.c.organization_id, SESSIONS.c.mode)
_END = update(SESSIONS).values(revoked_at=bindparam("now"), revoked_reason="upgraded").returning(*_REVOKED)
_CLAIM_GUEST_SESSION = _END.where(SESSIONS.c.revoked_at.is_(None), SESSIONS.c.id == bindparam("guest_session_id"),
                                  SESSIONS.c.consumer_id == bindparam("guest_id"),
                                  SESSIONS.c.organization_id == bindparam("guest_organization_id"))
_END_GUEST_SESSIONS = _END.where(SESSIONS.c.revoked_at.is_(None), SESSIONS.c.consumer_id == bindparam("guest_id"))
_MERGED_INTO = update(CONSUMERS).where(CONSUMERS.c.id == bindparam("guest_id")).values(
    merged_into=bindparam("consumer_id"))

# The locked path.
_BY_IDENTIFIER = (_CODES.c.organization_id == bindparam("organization_id"), _CODES.c.mode == bindparam("mode"),
                  _CODES.c.identifier == bindparam("identifier"))
_SELECT_CODE = select(_CODES).where(*_BY_IDENTIFIER).with_for_update()
_CONSUME = update(_CODES).where(_CODES.c.id == bindparam("code_id")).values(consumed_at=bindparam("now"))

# Both paths. "Still the code compared and still live", the condition of every fast-path write:
_STILL_LIVE = (_CODES.c.code_hash == bindparam("compared_hash"), _CODES.c.consumed_at.is_(None),
               _CODES.c.attempts < bindparam("attempt_limit"))
_WRONG_TRY = (update(_CODES).where(_CODES.c.organization_id == bindparam("code_organization_id"),
                                   _CODES.c.mode == bindparam("code_mode"),
                                   _CODES.c.identifier == bindparam("code_identifier"), *_STILL_LIVE)
              .values(attempts=_CODES.c.attempts + 1))

# The two-round-trip path.
_READ_CODE = {kind: select(_CODES, select(CONSUMERS.c.id).where(
    CONSUMERS.c.organization_id == _CODES.c.organization_id, CONSUMERS.c.mode == _CODES.c.mode,
    CONSUMERS.c[kind] == _CODES.c.identifier).scalar_subquery().label("consumer_id")).where(*_BY_IDENTIFIER)
    for kind in ("email", "phone")}
_CONSUMED = (update(_CODES).where(_CODES.c.id == bindparam("code_id"), *_STILL_LIVE,
                                  _CODES.c.expires_at > bindparam("now"))
             .values(consumed_at=bindparam("now")).returning(_CODES.c.id).cte("consumed"))


def _typed(column):
    """The session's value for `column` (`session_…`; also the new consumer's, where they share it)."""
    return bindparam(f"session_{column.key}", type_=column.type)


_START = insert(SESSIONS).from_select([column.key for column in SESSIONS.columns],
                                      select(*(_typed(column) for column in SESSIONS.columns))
                                      .where(exists(select(literal(1)).select_from(_CONSUMED))))
_CONSUME_AND_START = _START.add_cte(_CONSUMED).returning(SESSIONS.c.id)
_CONSUME_CREATE_AND_START = {kind: _START.add_cte(_CONSUMED).add_cte(
    insert(CONSUMERS).from_select(["id", "organization_id", "mode", kind, "created_at"], select(
        _typed(SESSIONS.c.consumer_id), _typed(SESSIONS.c.organization_id), _typed(SESSIONS.c.mode),
        bindparam("value", type_=CONSUMERS.c[kind].type), _typed(SESSIONS.c.created_at)).select_from(_CONSUMED))
    .cte("created"))
    .returning(SESSIONS.c.id) for kind in ("email", "phone")}
