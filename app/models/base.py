from __future__ import annotations

from ulid import ULID

MODES = ("test", "live")


def new_id(prefix: str) -> str:
    """A type prefix and a ULID: sortable by creation time, 80 random bits."""
    return f"{prefix}_{ULID()}"
