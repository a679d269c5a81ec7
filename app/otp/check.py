"""The one decision on a presented one-time code (the policy; the store only reads and writes).

Pure: no SQL and no clock of its own. The grant hashes the presented code up front, under
APP_SECRET and under each fallback secret of a rotation (every fallback whatever is stored:
the same work for every request); the store hands over the code it read, and `outcome` answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from app.otp.service import MAX_ATTEMPTS_PER_CODE, code_hash
from app.security.keys import constant_time_equal

#: Compared against when the identifier has no code, so both cases do the same work.
NO_CODE = "0" * 64


class StoredCode(Protocol):
    """What the decision reads of a stored code (a row of `otp_codes`)."""

    code_hash: Any
    consumed_at: Any
    attempts: Any
    expires_at: Any


@dataclass(frozen=True)
class PresentedCode:
    """A code as presented: its hash under APP_SECRET, and under each fallback secret."""

    hash: str
    fallback_hashes: tuple[str, ...] = ()

    @classmethod
    def of(cls, app_secret: str, fallbacks: tuple[str, ...] | list[str], organization_id: str, mode: str,
           identifier: str, code: str) -> PresentedCode:
        return cls(code_hash(app_secret, organization_id, mode, identifier, code),
                   tuple(code_hash(fallback, organization_id, mode, identifier, code) for fallback in fallbacks))

    def as_stored(self, stored: StoredCode | None) -> str:
        """The presented code's hash under the secret the stored code was hashed with: APP_SECRET,
        or a fallback during a rotation."""
        if not self.fallback_hashes:
            return self.hash
        stored_hash = stored.code_hash if stored is not None else NO_CODE
        found = self.hash
        for candidate in self.fallback_hashes:
            if constant_time_equal(candidate, stored_hash) and not constant_time_equal(self.hash, stored_hash):
                found = candidate
        return found

    def outcome(self, stored: StoredCode | None, now: datetime) -> str | None:
        """None (right and live), `otp_invalid` or `otp_expired`. The same work and the same
        answer whatever the identifier's history: the hash is compared even without a code, and
        a wrong code is `otp_invalid` even when the code is dead. Only the right code, too late
        or already used, is `otp_expired`."""
        presented = self.as_stored(stored)
        right = constant_time_equal(presented, stored.code_hash if stored is not None else NO_CODE)
        if stored is None or not right:
            return "otp_invalid"
        if not alive(stored) or stored.expires_at <= now:
            return "otp_expired"
        return None


def alive(stored: StoredCode) -> bool:
    return stored.consumed_at is None and stored.attempts < MAX_ATTEMPTS_PER_CODE
