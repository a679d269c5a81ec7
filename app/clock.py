"""The app's one source of "now" (Usher.clock): every service, grant and check asks it, so
tests move time forward instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """UTC wall-clock time plus an offset that only tests change."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def timestamp(self) -> float:
        return self().timestamp()

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)
