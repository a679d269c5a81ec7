"""Small reads of the admin views and the health checks, kept out of the views (which import no
SQLAlchemy): the tenant's experiences for paging, and whether the database answers."""

from __future__ import annotations

from sqlalchemy import Select, select, text

from app.db import Database
from app.models import Experience


def experiences_of(organization_id: str, mode: str) -> Select:
    """The tenant's experiences, for keyset paging (`app.services.paging.page`)."""
    return select(Experience).where(Experience.organization_id == organization_id, Experience.mode == mode)


def database_answers(db: Database) -> bool:
    """Whether a new connection to the database answers a trivial query (readiness)."""
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means not ready
        return False
    return True
