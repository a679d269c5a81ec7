"""The app's one source of "now" (Usher.clock): every service, grant and check asks it, so
tests move time forward instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """UTC wall-clock time plus an offset that only tests change."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self.frozen: datetime | None = None  # set by tests only (`freeze`)

    def __call__(self) -> datetime:
        return (self.frozen if self.frozen is not None else datetime.now(UTC)) + self.offset

    def timestamp(self) -> float:
        return self().timestamp()

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)

    def freeze(self, at: datetime | None) -> None:
        """Stop time at `at` (None lets it run again): a test of a margin of seconds then holds
        however slowly the machine runs it."""
        self.frozen = at
