"""Tenant-scoped lookups shared by the admin API, the consumer API and the services: nothing
crosses an organization or a mode, and another tenant's id is a 404 like an unknown one."""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from app.errors import ApiError
from app.security.callers import RequestContext

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
