"""What one app owns: its database, the auth server (tokens, grants) and its rate limits.

Built in `create_app` and kept in `app.extensions["usher"]`; never a module global.
"""

from __future__ import annotations

from dataclasses import dataclass

import logging

from flask import g
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.db import Database
from app.delivery.registry import Senders
from app.grants.base import AuthServer
from app.ratelimit import RateLimits


log = logging.getLogger("usher.db")


@dataclass
class Usher:
    db: Database
    auth: AuthServer
    limits: RateLimits
    senders: Senders

    def session(self) -> Session:
        """The request's session (one per request, closed at teardown)."""
        session = g.get("usher_session")
        if session is None:
            session = g.usher_session = self.db.sessionmaker()
        return session

    def teardown(self, _exc=None) -> None:
        """Close the request's session. The answer is already made: a database that died under
        it (the rollback on close fails) must not turn that answer into a 500."""
        session = g.pop("usher_session", None)
        if session is not None:
            try:
                session.close()
            except DBAPIError as exc:
                log.warning("closing a request's database session failed: %s", type(exc.orig).__name__)
