from __future__ import annotations

import json
from datetime import datetime

from flask import Response, current_app
from sqlalchemy.orm import Session

from app.services.events import Events
from app.services.tenancy import ID_SHAPE, tenant_get

__all__ = ["ID_SHAPE", "app_secret", "db_session", "json_response", "now", "tenant_get", "transaction"]


def now() -> datetime:
    """The app clock's now (see `app.clock`)."""
    return current_app.extensions["usher"].clock()


def app_secret() -> str:
    return current_app.extensions["usher"].settings.app_secret


def events() -> Events:
    """The app's webhook outbox, for the services that record events."""
    return current_app.extensions["usher"].events


def db_session() -> Session:
    return current_app.extensions["usher"].session()


def transaction():
    usher = current_app.extensions["usher"]
    return usher.db.transaction(usher.session())


def json_response(body: dict, status: int = 200) -> Response:
    """A hot path's answer, already in wire form: flask-smorest passes a `Response` through
    without a marshmallow dump, while the view's `@blp.response` schema still documents it
    (tests/test_wire_bodies.py checks that each such body is what the schema would write).
    The bytes are jsonify's: compact, with a trailing newline."""
    return Response(json.dumps(body, separators=(",", ":")) + "\n", status=status, mimetype="application/json")
