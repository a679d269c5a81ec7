from __future__ import annotations

import json
import re
from datetime import datetime

from flask import Response, current_app
from sqlalchemy.orm import Session

from app.errors import ApiError
from app.security.callers import RequestContext


def now() -> datetime:
    """The app clock's now (see `app.clock`)."""
    return current_app.extensions["usher"].clock()


def app_secret() -> str:
    return current_app.extensions["usher"].settings.app_secret


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


ID_SHAPE = re.compile(r"[a-z]{2,8}_[0-9A-HJKMNP-TV-Z]{26}")


def tenant_get(session: Session, model, object_id: str, ctx: RequestContext):
    """Fetch by id within the caller's organization and mode; anything else is a 404.

    An id that is not of our shape (prefix and ULID) is a 404 without asking the database."""
    if not ID_SHAPE.fullmatch(object_id):
        raise ApiError("not_found")
    obj = session.get(model, object_id)
    if obj is None or obj.organization_id != ctx.organization_id or obj.mode != ctx.mode:
        raise ApiError("not_found")
    return obj
