"""Events out: the outbox, written by the service that makes a change, in its transaction.

`Events.record` is called inside the write transaction of the change. When no endpoint of the
tenant listens to the event's type it does nothing at all (one dict lookup: which types a
tenant listens to is cached per process for `WEBHOOK_LISTENERS_CACHE_SECONDS`, 1 s by
default, and forgotten at once by this process when an endpoint changes). Otherwise it inserts
the event and one pending delivery per listening endpoint, in the same transaction: an event
is never lost, and never sent for a change that rolled back. The deliveries are handed to the
job engine after the response is made (`after_request`), never inside the request's work.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime

from flask import Flask, current_app, g, has_request_context
from sqlalchemy import Connection, bindparam, insert, literal, select

from app.models import WebhookDelivery, WebhookEvent, WebhookSubscription, new_id
from app.schemas.common import iso_instant

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

    def __init__(self, cache_seconds: float, enqueue, clock):
        self.cache_seconds, self.clock = cache_seconds, clock
        self._enqueue = enqueue  # (endpoint_id, event_id) -> None: hands one delivery to the job engine
        self._listening: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

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

    def listens_to_any(self, connection: Connection, organization_id: str, mode: str, *event_types: str) -> bool:
        """Whether some endpoint of the tenant listens to one of these types (the same cache)."""
        return not self.listening(connection, organization_id, mode).isdisjoint(event_types)

    def forget(self, organization_id: str, mode: str) -> None:
        """Drop this process's cached answer for a tenant (its endpoints just changed)."""
        with self._lock:
            self._listening.pop((organization_id, mode), None)

    def record(self, connection: Connection, organization_id: str, mode: str, event_type: str,
               data: dict) -> str | None:
        """Write the event and its deliveries in the caller's transaction, if anyone listens.

        Returns the event id (the `webhook-id`), or None when nobody listens."""
        if event_type not in self.listening(connection, organization_id, mode):
            return None
        now = self.clock()
        event_id = new_id("msg")
        connection.execute(_INSERT_EVENT, {"id": event_id, "organization_id": organization_id, "mode": mode,
                                           "type": event_type, "body": event_body(event_type, now, data),
                                           "created_at": now})
        endpoints = connection.execute(_INSERT_DELIVERIES, {"event_id": event_id, "organization_id": organization_id,
                                                            "mode": mode, "event_type": event_type,
                                                            "now": now}).scalars().all()
        if has_request_context():
            g.setdefault("usher_deliveries", []).extend((endpoint_id, event_id) for endpoint_id in endpoints)
        return event_id

    def sessions_revoked(self, connection: Connection, rows, reason: str) -> None:
        """`session.revoked` for each (id, consumer_id, organization_id, mode) row just revoked."""
        for row in rows:
            self.record(connection, row.organization_id, row.mode, "session.revoked",
                        {"sessionId": row.id, "consumerId": row.consumer_id, "reason": reason})

    def hand_over(self, response):
        """Give the request's deliveries to the job engine once the response has been sent
        (`call_on_close`), so not even a slow broker delays it. A delivery whose transaction
        rolled back is found missing by the job and dropped; one that could not be handed over
        (broker down) stays pending and the workers' sweep sends it (`Jobs.sweep`)."""
        pending = g.pop("usher_deliveries", None)
        if pending:
            response.call_on_close(lambda: [self._enqueue(*delivery) for delivery in pending])
        return response


def events_of(app: Flask) -> Events:
    return app.extensions["events"]


def register_events(app: Flask, events: Events) -> None:
    app.extensions["events"] = events
    app.after_request(events.hand_over)


def record(connection: Connection, organization_id: str, mode: str, event_type: str, data: dict) -> str | None:
    """`Events.record` of the current app: the one-line hook the services and grants call."""
    return events_of(current_app).record(connection, organization_id, mode, event_type, data)


def listens_to_any(connection: Connection, organization_id: str, mode: str, *event_types: str) -> bool:
    """`Events.listens_to_any` of the current app."""
    return events_of(current_app).listens_to_any(connection, organization_id, mode, *event_types)


def sessions_revoked(connection: Connection, rows, reason: str) -> None:
    events_of(current_app).sessions_revoked(connection, rows, reason)
