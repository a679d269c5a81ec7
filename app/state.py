"""What one app owns: its settings, clock, database, caller resolver, the auth server
(tokens, grants), its rate limits, senders and stores.

Built in `create_app` and kept in `app.extensions["usher"]`; never a module global.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import g
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.botdefense import BotDefense
from app.clock import Clock
from app.config import Settings
from app.db import Database
from app.delivery.registry import Senders
from app.grants.base import AuthServer
from app.ratelimit import RateLimits
from app.security.callers import CallerResolver
from app.services.events import Events
from app.stores import Stores

log = logging.getLogger("usher.db")


@dataclass
class Usher:
    settings: Settings
    clock: Clock
    db: Database
    callers: CallerResolver
    auth: AuthServer
    limits: RateLimits
    senders: Senders
    bot_defense: BotDefense
    #: The webhook outbox, passed to the services that record events.
    events: Events
    #: The persistence of each aggregate (`app.stores`), for the views and services.
    stores: Stores

    def session(self) -> Session:
        """The request's session (one per request, closed at teardown)."""
        session = g.get("usher_session")
        if session is None:
            session = g.usher_session = self.db.sessionmaker()
        return session

    def reader(self) -> Connection:
        """The request's Core connection for the hot reads (no ORM session to set up), in
        autocommit: each read sees the latest commit and costs no BEGIN/ROLLBACK round trips."""
        connection = g.get("usher_reader")
        if connection is None:
            connection = g.usher_reader = self.db.reader()
        return connection

    def teardown(self, _exc: BaseException | None = None) -> None:
        """Close the request's session and connection. The answer is already made: a database
        that died under them (the rollback on close fails) must not turn it into a 500."""
        for name in ("usher_session", "usher_reader"):
            resource = g.pop(name, None)
            if resource is not None:
                try:
                    resource.close()
                except DBAPIError as exc:
                    log.warning("closing a request's database connection failed: %s", type(exc.orig).__name__)
