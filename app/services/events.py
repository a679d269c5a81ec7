"""Events out: the outbox, written by the service that makes a change, in its transaction.

`Events.record` is called inside the write transaction of the change. When no endpoint of the
tenant listens to the event's type it does nothing at all (one dict lookup: which types a
tenant listens to is cached per process for `WEBHOOK_LISTENERS_CACHE_SECONDS`, 1 s by
default, and forgotten at once by this process when an endpoint changes). Otherwise it inserts
the event and one pending delivery per listening endpoint, in the same transaction: an event
is never lost, and never sent for a change that rolled back. The deliveries are handed to the
job engine after the response is made, never inside the request's work: the API layer opens a
delivery scope around each request (`register_events`), and outside one (the CLI, jobs) a
recorded delivery stays pending for the workers' sweep.

The outbox is passed explicitly (`AuthServer.events`, a parameter of the services that end
sessions or merge guests), as the database, tokens and clock are; nothing here reads Flask's
globals. Events are typed (`app.events`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, insert, literal, select

from app.events import Event, SessionRevoked
from app.models import WebhookDelivery, WebhookEvent, WebhookSubscription, new_id
from app.schemas.common import iso_instant

if TYPE_CHECKING:
    from flask import Flask, Response

_EVENTS = WebhookEvent.__table__
_DELIVERIES = WebhookDelivery.__table__
_SUBSCRIPTIONS = WebhookSubscription.__table__

_LISTENED_TYPES = select(_SUBSCRIPTIONS.c.event_type).distinct().where(
    _SUBSCRIPTIONS.c.organization_id == bindparam("organization_id"), _SUBSCRIPTIONS.c.mode == bindparam("mode"))
_INSERT_EVENT = insert(_EVENTS)
# One pending delivery per endpoint that listens now (read in this transaction, not from the cache).
_INSERT_DELIVERIES = insert(_DELIVERIES).from_select(
    ["endpoint_id", "event_id", "organization_id", "mode", "event_type", "status", "attempts", "next_attempt_at",
     "created_at"],
    select(_SUBSCRIPTIONS.c.endpoint_id, bindparam("event_id"), _SUBSCRIPTIONS.c.organization_id,
           _SUBSCRIPTIONS.c.mode, _SUBSCRIPTIONS.c.event_type, literal("pending"), literal(0), bindparam("now"),
           bindparam("now")).where(
        _SUBSCRIPTIONS.c.organization_id == bindparam("organization_id"), _SUBSCRIPTIONS.c.mode == bindparam("mode"),
        _SUBSCRIPTIONS.c.event_type == bindparam("event_type")),
).returning(_DELIVERIES.c.endpoint_id)


def event_body(event_type: str, at: datetime, data: dict) -> str:
    """The exact JSON that is signed and sent: `{"type", "timestamp", "data"}`."""
    return json.dumps({"type": event_type, "timestamp": iso_instant(at), "data": data}, separators=(",", ":"))


class Events:
    """The outbox of one app (built in `create_app`, kept in `app.extensions["events"]`)."""

    def __init__(self, cache_seconds: float, enqueue: Callable[[str, str], Any], clock: Callable[[], datetime]):
        self.cache_seconds, self.clock = cache_seconds, clock
        self._enqueue = enqueue  # (endpoint_id, event_id) -> None: hands one delivery to the job engine
        self._listening: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()
        #: The (endpoint_id, event_id) deliveries recorded in the open delivery scope, if any.
        self._pending: ContextVar[list[tuple[str, str]] | None] = ContextVar("usher_deliveries", default=None)

    def listening(self, connection: Connection, organization_id: str, mode: str) -> frozenset[str]:
        """The event types some endpoint of the tenant listens to (cached briefly per process)."""
        key = (organization_id, mode)
        cached = self._listening.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        types = frozenset(connection.execute(_LISTENED_TYPES, {"organization_id": organization_id,
                                                               "mode": mode}).scalars())
        with self._lock:
            self._listening[key] = (now + self.cache_seconds, types)
        return types

    def listens_to_any(self, connection: Connection, organization_id: str, mode: str,
                       *event_types: type[Event]) -> bool:
        """Whether some endpoint of the tenant listens to one of these types (the same cache)."""
        return not self.listening(connection, organization_id, mode).isdisjoint(
            event.TYPE for event in event_types)

    def forget(self, organization_id: str, mode: str) -> None:
        """Drop this process's cached answer for a tenant (its endpoints just changed)."""
        with self._lock:
            self._listening.pop((organization_id, mode), None)

    def record(self, connection: Connection, event: Event) -> str | None:
        """Write the event and its deliveries in the caller's transaction, if anyone listens.

        Returns the event id (the `webhook-id`), or None when nobody listens."""
        event_type, organization_id, mode = event.type, event.organization_id, event.mode
        if event_type not in self.listening(connection, organization_id, mode):
            return None
        now = self.clock()
        event_id = new_id("msg")
        connection.execute(_INSERT_EVENT, {"id": event_id, "organization_id": organization_id, "mode": mode,
                                           "type": event_type, "body": event_body(event_type, now, event.data()),
                                           "created_at": now})
        endpoints = connection.execute(_INSERT_DELIVERIES, {"event_id": event_id, "organization_id": organization_id,
                                                            "mode": mode, "event_type": event_type,
                                                            "now": now}).scalars().all()
        pending = self._pending.get()
        if pending is not None:
            pending.extend((endpoint_id, event_id) for endpoint_id in endpoints)
        return event_id

    def sessions_revoked(self, connection: Connection, rows: Iterable[Any], reason: str) -> None:
        """`session.revoked` for each (id, consumer_id, organization_id, mode) row just revoked."""
        for row in rows:
            self.record(connection, SessionRevoked(organization_id=row.organization_id, mode=row.mode,
                                                   session_id=row.id, consumer_id=row.consumer_id, reason=reason))

    def open_scope(self) -> None:
        """Start collecting the deliveries recorded from now on in this context (a request)."""
        self._pending.set([])

    def close_scope(self, _error: BaseException | None = None) -> None:
        """Stop collecting (always called, even when the request failed)."""
        self._pending.set(None)

    def hand_over(self, response: Response) -> Response:
        """Give the scope's deliveries to the job engine once the response has been sent
        (`call_on_close`), so not even a slow broker delays it. A delivery whose transaction
        rolled back is found missing by the job and dropped; one that could not be handed over
        (broker down) stays pending and the workers' sweep sends it (`Jobs.sweep`)."""
        pending = self._pending.get()
        self._pending.set(None)
        if pending:
            response.call_on_close(lambda: [self._enqueue(*delivery) for delivery in pending])
        return response


def events_of(app: Flask) -> Events:
    return app.extensions["events"]


def register_events(app: Flask, events: Events) -> None:
    """Keep the outbox on the app and give each request a delivery scope."""
    app.extensions["events"] = events
    app.before_request(events.open_scope)
    app.after_request(events.hand_over)
    app.teardown_request(events.close_scope)
