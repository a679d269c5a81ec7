from __future__ import annotations

from flask import current_app
from sqlalchemy.orm import Session

from app.errors import ApiError
from app.security.context import RequestContext


def db_session() -> Session:
    return current_app.extensions["usher"].session()


def transaction():
    usher = current_app.extensions["usher"]
    return usher.db.transaction(usher.session())


def tenant_get(session: Session, model, object_id: str, ctx: RequestContext):
    """Fetch by id within the caller's organization and mode; anything else is a 404."""
    obj = session.get(model, object_id)
    if obj is None or obj.organization_id != ctx.organization_id or obj.mode != ctx.mode:
        raise ApiError("not_found")
    return obj
