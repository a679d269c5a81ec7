"""Ed25519 keyrings: stored in the database, cached per process for a few seconds.

Two keyrings share the `signing_keys` table, told apart by `purpose`:

- `access` keys sign access tokens and are published in the JWKS;
- `refresh` keys sign refresh tokens and are never published, so no JWKS-based verifier can
  take a refresh token for an access token.

Keys made before keys had a purpose (`legacy`) signed both kinds: they are published and still
verify both until they are withdrawn or their tokens have expired; they never sign refresh
tokens again.

**Staged rotation.** A rotated-in key is stored with `activates_at = now + lead`: it is published
at once (state `next`) and signs only from `activates_at` on (`current`), so a verifier that
caches the JWKS for less than the lead never meets an unknown `kid`. The key it replaces stays
published (`previous`) until every token it can have signed has expired (`publish_until`).
`retire` withdraws a key at once (`retired`). Every worker and host reads the same table; the
current key is chosen at call time from the cached rows, so all of them switch at `activates_at`.
An unknown `kid` makes a worker look again at once (at most once a second), so a token signed
elsewhere with a brand-new key verifies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import Database, utcnow
from app.models import SigningKey, new_id
from app.security.crypto import SIGNING_KEY_SEAL, Sealer

# A replaced key stays published for the longest token lifetime the settings allow (1 year).
MAX_TOKEN_LIFETIME = timedelta(days=366)
FORCED_RELOAD_INTERVAL = 1.0

ACCESS_KEYS = "access"
REFRESH_KEYS = "refresh"
LEGACY_KEYS = "legacy"


@dataclass(frozen=True)
class KeyEntry:
    kid: str
    purpose: str
    private: Ed25519PrivateKey
    public: Ed25519PublicKey
    jwk: dict
    activates_at: datetime
    publish_until: datetime | None
    retired_at: datetime | None

    def valid_at(self, now: datetime) -> bool:
        """Whether tokens it signed may verify now (not withdrawn, not past its publication)."""
        return self.retired_at is None and (self.publish_until is None or self.publish_until > now)

    def state(self, now: datetime, current_kid: str | None) -> str:
        if not self.valid_at(now):
            return "retired"
        if self.kid == current_kid:
            return "current"
        return "next" if self.activates_at > now else "previous"


class SigningKeyError(Exception):
    """A signing-key command that cannot be done (unknown kid, retiring the current key)."""


class Keyring:
    """The keys of one purpose. `signs` and `verifies` name the purposes it signs and verifies with."""

    def __init__(self, db: Database, app_secret: str, cache_seconds: float, purpose: str,
                 clock: Callable[[], datetime] = utcnow, fallbacks: Sequence[str] = ()):
        self.db = db
        self.purpose = purpose
        self.cache_seconds = cache_seconds
        self.clock = clock
        self.verifies = (purpose, LEGACY_KEYS)
        self.signs = (ACCESS_KEYS, LEGACY_KEYS) if purpose == ACCESS_KEYS else (purpose,)
        self.published = purpose == ACCESS_KEYS
        self._sealer = Sealer(app_secret, SIGNING_KEY_SEAL, fallbacks)
        self._lock = threading.Lock()
        self._keys: dict[str, KeyEntry] = {}
        self._loaded_at = float("-inf")
        self._forced_at = float("-inf")

    # -- storage -----------------------------------------------------------------------------
    def _encrypt(self, kid: str, private: Ed25519PrivateKey) -> bytes:
        return self._sealer.seal(private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()), kid)

    def _decrypt(self, kid: str, blob: bytes) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self._sealer.open(blob, kid))

    def _new_row(self, now: datetime, activates_at: datetime) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        kid = new_id("sig")
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return SigningKey(kid=kid, purpose=self.purpose, public_key=public,
                          private_key_encrypted=self._encrypt(kid, private), created_at=now,
                          activates_at=activates_at)

    def rotate(self, session: Session, lead: timedelta = timedelta(0)) -> SigningKey:
        """Add a key that signs from `now + lead` on; the keys it replaces stay published until
        every token they can have signed has expired. A key still waiting to sign that would
        take over later than the new one (staged by an earlier `rotate`, before a `--now`) is
        withdrawn: it never signed, and must not replace an emergency key."""
        now = self.clock()
        row = self._new_row(now, now + lead)
        session.execute(update(SigningKey)
                        .where(SigningKey.purpose.in_(self.signs), SigningKey.retired_at.is_(None),
                               SigningKey.activates_at > row.activates_at)
                        .values(retired_at=now))
        session.execute(update(SigningKey)
                        .where(SigningKey.purpose.in_(self.signs), SigningKey.retired_at.is_(None),
                               SigningKey.publish_until.is_(None))
                        .values(publish_until=row.activates_at + MAX_TOKEN_LIFETIME))
        session.add(row)
        session.flush()
        self.invalidate()
        return row

    def retire(self, session: Session, kid: str) -> SigningKey | None:
        """Withdraw `kid` at once (None when it is not one of this keyring's). The key that signs
        cannot be withdrawn: rotate with `--now` first."""
        row = session.get(SigningKey, kid)
        if row is None or row.purpose not in self.verifies:
            return None
        self.invalidate()
        current = self.current()
        if current.kid == kid:
            raise SigningKeyError(f"{kid} is the current {self.purpose} key: run `signing-key rotate --now` first")
        if row.retired_at is None:
            row.retired_at = self.clock()
            session.flush()
        self.invalidate()
        return row

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    # -- cache -------------------------------------------------------------------------------
    def _rows(self) -> list[SigningKey]:
        with self.db.sessionmaker() as session:  # a plain reader, even inside a write
            return list(session.scalars(select(SigningKey).where(SigningKey.purpose.in_(self.verifies))
                                        .order_by(SigningKey.kid)))

    def _signer_among(self, keys, now: datetime) -> KeyEntry | None:
        usable = [key for key in keys if key.purpose in self.signs and key.activates_at <= now and key.valid_at(now)]
        return max(usable, key=lambda key: (key.activates_at, key.kid), default=None)

    def _load(self) -> None:
        rows = self._rows()
        now = self.clock()
        if self._signer_among((self._entry(row) for row in rows), now) is None:
            with self.db.transaction() as session:  # a first key (or after every key was withdrawn)
                session.add(self._new_row(now, now))
            rows = self._rows()
        self._keys = {row.kid: self._entry(row) for row in rows}
        self._loaded_at = time.monotonic()

    def _entry(self, row: SigningKey) -> KeyEntry:
        cached = self._keys.get(row.kid)
        private = cached.private if cached else self._decrypt(row.kid, row.private_key_encrypted)
        public = private.public_key()
        return KeyEntry(row.kid, row.purpose, private, public, {
            **OKPAlgorithm.to_jwk(public, as_dict=True), "kid": row.kid, "use": "sig", "alg": "EdDSA"},
            row.activates_at, row.publish_until, row.retired_at)

    def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at >= self.cache_seconds:
            with self._lock:
                if time.monotonic() - self._loaded_at >= self.cache_seconds:
                    self._load()

    def current(self) -> KeyEntry:
        """The key that signs now: the latest activated one, chosen at call time."""
        self._fresh()
        signer = self._signer_among(self._keys.values(), self.clock())
        if signer is None:  # the cached signer ran out (withdrawn elsewhere): look again
            with self._lock:
                self._load()
            signer = self._signer_among(self._keys.values(), self.clock())
        assert signer is not None  # _load() always leaves an activated key (making the first if none)
        return signer

    def signing_key(self, kid: str) -> KeyEntry | None:
        """The key `kid` from the cache as it is (for signing with a kid just read from it)."""
        return self._keys.get(kid) or self.get(kid)

    def get(self, kid: str) -> KeyEntry | None:
        """A key that may verify now; an unknown id triggers one early reload (rate-limited)."""
        self._fresh()
        entry = self._keys.get(kid)
        if entry is None and time.monotonic() - self._forced_at >= FORCED_RELOAD_INTERVAL:
            with self._lock:
                self._forced_at = time.monotonic()
                self._load()
            entry = self._keys.get(kid)
        if entry is None or not entry.valid_at(self.clock()):
            return None
        return entry

    def jwks(self) -> dict:
        """The public keys that may verify now (next, current and previous); none for refresh keys."""
        if not self.published:
            return {"keys": []}
        self._fresh()
        now = self.clock()
        return {"keys": [key.jwk for key in self._keys.values() if key.valid_at(now)]}

    def listing(self) -> list[dict]:
        """Every key of this keyring with its state and dates, straight from the table."""
        self.invalidate()
        current = self.current()
        now = self.clock()
        return [{"kid": key.kid, "purpose": key.purpose, "state": key.state(now, current.kid),
                 "activatesAt": _iso(key.activates_at), "publishUntil": _iso(key.publish_until),
                 "retiredAt": _iso(key.retired_at)}
                for key in sorted(self._keys.values(), key=lambda key: (key.activates_at, key.kid))]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")
