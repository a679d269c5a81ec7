"""Dashboard sessions: server-side rows that refer to a key by id (no Flask here).

The browser holds a random token in Flask's signed session cookie; the row is found by the
token's keyed hash, so neither the database nor the cookie holds anything that works as a key.
A session lasts while it is used (8 h idle expiry) and while its key works: every page asks
`CallerResolver.resolve_key_id`, so revoking or expiring the key ends the session at once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import (
    Connection,
    CursorResult,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from app.db import Database
from app.errors import AUTHENTICATION_REQUIRED, ApiError
from app.models import DashboardSession
from app.security.crypto import DASHBOARD_REVEAL_SEAL, Sealer
from app.security.keys import keyed_hash

IDLE_EXPIRY = timedelta(hours=8)
TOUCH_RESOLUTION = timedelta(seconds=60)  # last_seen_at is written at most once a minute

_T = DashboardSession.__table__
_T_C = _T.c
_FIND = select(_T_C.key_id, _T_C.last_seen_at).where(_T_C.token_hash == bindparam("token_hash"))


class DashboardSessions:
    def __init__(self, db: Database, app_secret: str, clock: Callable[[], datetime], fallbacks: Sequence[str] = ()):
        self.db = db
        self.app_secret = app_secret
        self.fallbacks = tuple(fallbacks)
        self.clock = clock
        self._sealer = Sealer(app_secret, DASHBOARD_REVEAL_SEAL, fallbacks)

    def _hash(self, token: str) -> str:
        return keyed_hash(self.app_secret, "dashboard-session", token)

    def start(self, key_id: str) -> str:
        """A new session for the key; returns the browser's token. Idle rows of anybody are
        removed on the way (sign-in is rare, so this is where the table is kept small)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self.db.write() as connection:
            connection.execute(delete(_T).where(_T_C.last_seen_at <= now - IDLE_EXPIRY))
            connection.execute(insert(_T).values(token_hash=self._hash(token), key_id=key_id, created_at=now,
                                                 last_seen_at=now))
        return token

    def key_of(self, reader: Connection, token: str) -> str | None:
        """The key id of a live session (and its use noted), or None: unknown, ended or idle for
        8 hours (then removed)."""
        token_hash = self._hash(token)
        row = reader.execute(_FIND, {"token_hash": token_hash}).first()
        if row is None and self.fallbacks:  # a session made under an earlier APP_SECRET: re-keyed on use
            row = self._rehash(token) or reader.execute(_FIND, {"token_hash": token_hash}).first()
        if row is None:
            return None
        now = self.clock()
        if now - row.last_seen_at >= IDLE_EXPIRY:
            self.end(token)
            return None
        if now - row.last_seen_at > TOUCH_RESOLUTION:
            with self.db.write() as connection:
                connection.execute(update(_T).where(_T_C.token_hash == token_hash).values(last_seen_at=now))
        return row.key_id

    def _rehash(self, token: str):
        """The row of a session hashed with a fallback secret, moved to the APP_SECRET hash (its
        held reveal re-sealed under the new hash), or None."""
        for fallback in self.fallbacks:
            old_hash = keyed_hash(fallback, "dashboard-session", token)
            with self.db.write() as connection:
                found = connection.execute(select(_T_C.key_id, _T_C.last_seen_at, _T_C.reveal)
                                           .where(_T_C.token_hash == old_hash).with_for_update()).first()
                if found is None:
                    continue
                reveal = found.reveal
                if reveal is not None:
                    reveal = self._sealer.seal(self._sealer.open(reveal, old_hash), self._hash(token))
                connection.execute(update(_T).where(_T_C.token_hash == old_hash)
                                   .values(token_hash=self._hash(token), reveal=reveal))
                return found
        return None

    def end(self, token: str) -> None:
        with self.db.write() as connection:
            connection.execute(delete(_T).where(_T_C.token_hash == self._hash(token)))

    def hold_reveal(self, token: str, object_id: str, value: str, kind: str = "key", *,
                    within: Session, follow_key: bool = False) -> None:
        """Keep a new value (a key's, or a webhook endpoint's signing secret: `kind`), sealed,
        for the one page that shows it. `within`: the transaction that made the value (a key's
        creation or roll, an endpoint's creation or secret rotation), so the value is held if and
        only if that change commits: never a key or secret whose value is lost. `follow_key`:
        the value is the successor of the session's own key (rolled), which the session goes on
        with."""
        token_hash = self._hash(token)
        blob = self._sealer.seal(json.dumps({"kind": kind, "id": object_id, "value": value}).encode(), token_hash)
        within.flush()  # the new row first: the session may now refer to it
        held = within.execute(update(_T).where(_T_C.token_hash == token_hash).values(
            reveal=blob, **({"key_id": object_id} if follow_key else {})))
        if cast(CursorResult, held).rowcount != 1:  # the session ended meanwhile (signed out elsewhere)
            raise ApiError(AUTHENTICATION_REQUIRED, "This dashboard session has ended: sign in again. "
                                                    "Nothing was changed.")

    def take_reveal(self, token: str) -> dict | None:
        """The held value, cleared in the same transaction: whoever takes it, takes it once."""
        token_hash = self._hash(token)
        with self.db.write() as connection:
            blob = connection.execute(select(_T_C.reveal).where(_T_C.token_hash == token_hash)
                                      .with_for_update()).scalar()
            if blob is None:
                return None
            connection.execute(update(_T).where(_T_C.token_hash == token_hash).values(reveal=None))
        return json.loads(self._sealer.open(blob, token_hash))
