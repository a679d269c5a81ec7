from __future__ import annotations

from sqlalchemy import Select
from sqlalchemy.orm import Session


def page(session: Session, query: Select, id_column, limit: int, starting_after: str | None) -> dict:
    """Keyset paging on a ULID id (ids sort by creation time): stable under inserts."""
    if starting_after:
        query = query.where(id_column > starting_after)
    rows = list(session.scalars(query.order_by(id_column).limit(limit + 1)))
    return {"data": rows[:limit], "has_more": len(rows) > limit}
