"""Exchange codes' persistence: a code stored when a merchant's server vouches for a shopper,
and redeemed at most once.

The grant (`app.grants.external`) holds the policy (tenant, single use, expiry, PKCE per
RFC 7636); the store holds the atomicity: `redeem` opens one write transaction with the code's
row locked (FOR UPDATE; SQLite's write lock is held already), so of concurrent exchanges of one
code exactly one sees it unused, and everything the exchange makes (the consumer, its external
identity, the session, the code marked used) commits together or not at all. A replayed code
(RFC 6749 §4.1.2) ends the session it made, audited, with `ExchangeCodeReplayed`.

One implementation serves every database (`SqlExchangeStore`): an exchange is a sign-in's
transaction, with no PostgreSQL-only shortcut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection, bindparam, insert, select, update

from app.db import Database
from app.events import ExchangeCodeReplayed
from app.models import ExchangeCode, ExternalIdentity
from app.services import audit
from app.services.events import Events
from app.services.sessions import revoke_one


class Redemption(Protocol):
    """One exchange, inside its write transaction."""

    #: The code's row (a detached value), or None: no code has any of the hashes.
    code: ExchangeCode | None
    #: The transaction, for the sign-in the exchange makes in it.
    connection: Connection

    def replayed(self, now: datetime) -> None:
        """The code was used already: end the session it made, audit, emit `exchange_code.replayed`."""
        ...

    def consumer(self, now: datetime, create: Callable[[], str]) -> str:
        """The consumer of the code's (provider, issuer, subject): its identity's, with the code's
        claims (latest win); on first use `create()`'s, linked to a new identity."""
        ...

    def consume(self, session_id: str, now: datetime) -> None:
        """Mark the code used, by the session it made."""
        ...


class ExchangeStore(Protocol):
    def issue(self, code: ExchangeCode) -> None:
        """Store a new code (its hash, never the code)."""
        ...

    def redeem(self, code_hashes: Iterable[str]) -> AbstractContextManager[Redemption]:
        """The first stored code of these hashes (APP_SECRET's, then each
        fallback's, tried in order), locked for one write transaction that commits on leaving
        and rolls back on an error."""
        ...


class SqlRedemption:
    def __init__(self, connection: Connection, events: Events, code: ExchangeCode | None):
        self.connection, self.events, self.code = connection, events, code

    def _code(self) -> ExchangeCode:
        if self.code is None:
            raise LookupError("no exchange code to act on")
        return self.code

    def replayed(self, now: datetime) -> None:
        code, connection = self._code(), self.connection
        ended = (revoke_one(connection, self.events, code.session_id, "exchange_code_replayed", now)
                 if code.session_id else None)
        audit.record(connection, code.organization_id, code.mode, audit.SYSTEM, "exchange_code.replayed",
                     ("session", code.session_id) if code.session_id else None,
                     {"provider": code.provider, "sessionRevoked": bool(code.session_id)}, now)
        self.events.record(connection, ExchangeCodeReplayed(
            organization_id=code.organization_id, mode=code.mode, session_id=code.session_id,
            consumer_id=ended.consumer_id if ended else None))

    def consumer(self, now: datetime, create: Callable[[], str]) -> str:
        """Email or phone in the claims are kept on the identity only: they never merge consumers."""
        code, connection = self._code(), self.connection
        triple = {"organization_id": code.organization_id, "mode": code.mode, "provider": code.provider,
                  "issuer": code.issuer, "subject": code.subject}
        identity = connection.execute(_FIND_IDENTITY, triple).first()
        if identity is None:
            consumer_id = create()
            connection.execute(_INSERT_IDENTITY, {**triple, "consumer_id": consumer_id, "claims": code.claims or {},
                                                  "created_at": now, "updated_at": now})
            return consumer_id
        if code.claims is not None:
            connection.execute(_UPDATE_CLAIMS, {"identity_id": identity.id, "claims": code.claims, "now": now})
        return identity.consumer_id

    def consume(self, session_id: str, now: datetime) -> None:
        self.connection.execute(_CONSUME, {"code": self._code().code_hash, "now": now, "made_session": session_id})


class SqlExchangeStore:
    """Every database: the ORM for the (cold) issue, one locked Core transaction per redemption."""

    def __init__(self, db: Database, events: Events):
        self.db = db
        self.events = events

    def issue(self, code: ExchangeCode) -> None:
        with self.db.transaction() as session:
            session.add(code)

    @contextmanager
    def redeem(self, code_hashes: Iterable[str]) -> Iterator[Redemption]:
        with self.db.write() as connection:
            found = None
            for code_hash in code_hashes:  # APP_SECRET's first; a fallback's only on a miss (rotation)
                found = connection.execute(_SELECT_CODE, {"code_hash": code_hash}).first()
                if found is not None:
                    break
            yield SqlRedemption(connection, self.events, None if found is None else ExchangeCode(**found._mapping))


_CODES = ExchangeCode.__table__
_IDENTITIES = ExternalIdentity.__table__
_SELECT_CODE = select(_CODES).where(_CODES.c.code_hash == bindparam("code_hash")).with_for_update()
_CONSUME = (update(_CODES).where(_CODES.c.code_hash == bindparam("code"))
            .values(consumed_at=bindparam("now"), session_id=bindparam("made_session")))
_FIND_IDENTITY = select(_IDENTITIES.c.id, _IDENTITIES.c.consumer_id).where(
    *(_IDENTITIES.c[name] == bindparam(name) for name in ("organization_id", "mode", "provider", "issuer", "subject")))
_INSERT_IDENTITY = insert(_IDENTITIES)
_UPDATE_CLAIMS = (update(_IDENTITIES).where(_IDENTITIES.c.id == bindparam("identity_id"))
                  .values(claims=bindparam("claims"), updated_at=bindparam("now")))
