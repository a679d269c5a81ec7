"""What one app owns: its database, the auth server (tokens, grants) and its rate limits.

Built in `create_app` and kept in `app.extensions["usher"]`; never a module global.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import g
from sqlalchemy.orm import Session

from app.db import Database
from app.delivery.registry import Senders
from app.grants.base import AuthServer
from app.ratelimit import RateLimits


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
        session = g.pop("usher_session", None)
        if session is not None:
            session.close()
