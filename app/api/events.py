"""The events outbox on the app: one delivery scope per request (`app.services.events`)."""

from __future__ import annotations

from flask import Flask

from app.services.events import Events


def events_of(app: Flask) -> Events:
    return app.extensions["events"]


def register_events(app: Flask, events: Events) -> None:
    """Keep the outbox on the app and give each request a delivery scope."""
    app.extensions["events"] = events
    app.before_request(events.open_scope)
    app.after_request(events.hand_over)
    app.teardown_request(events.close_scope)
