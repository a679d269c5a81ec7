"""The Ed25519 keyring: stored in the database, cached per process for a few seconds.

Every worker and host reads the same table, so all of them sign with the newest key within
`KEYRING_CACHE_SECONDS` of a rotation; an unknown `kid` makes a worker look again at once
(at most once a second), so a token signed elsewhere with a brand-new key verifies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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

from app.db import Database
from app.models import SigningKey, new_id
from app.security.crypto import Sealer

# A retired key stays published for the longest token lifetime the settings allow (1 year).
MAX_TOKEN_LIFETIME = timedelta(days=366)
FORCED_RELOAD_INTERVAL = 1.0


@dataclass(frozen=True)
class KeyEntry:
    kid: str
    private: Ed25519PrivateKey
    public: Ed25519PublicKey
    jwk: dict


class Keyring:
    def __init__(self, db: Database, app_secret: str, cache_seconds: float, clock: Callable[[], datetime]):
        self.db = db
        self.clock = clock
        self.cache_seconds = cache_seconds
        self._sealer = Sealer(app_secret, "usher signing keys v1")
        self._lock = threading.Lock()
        self._keys: dict[str, KeyEntry] = {}
        self._published: list[dict] = []
        self._published_kids: frozenset[str] = frozenset()
        self._current: KeyEntry | None = None
        self._loaded_at = float("-inf")
        self._forced_at = float("-inf")

    # -- storage -----------------------------------------------------------------------------
    def _encrypt(self, kid: str, private: Ed25519PrivateKey) -> bytes:
        return self._sealer.seal(private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()), kid)

    def _decrypt(self, kid: str, blob: bytes) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self._sealer.open(blob, kid))

    def _new_row(self, now: datetime) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        kid = new_id("sig")
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return SigningKey(kid=kid, public_key=public, private_key_encrypted=self._encrypt(kid, private),
                          created_at=now)

    def rotate(self, session: Session) -> str:
        """Add a new key and make it current; the others are published until their tokens expire."""
        now = self.clock()
        row = self._new_row(now)
        session.execute(update(SigningKey).where(SigningKey.retired_at.is_(None))
                        .values(retired_at=now, publish_until=now + MAX_TOKEN_LIFETIME))
        session.add(row)
        session.flush()
        self._loaded_at = float("-inf")
        return row.kid

    # -- cache -------------------------------------------------------------------------------
    def _rows(self) -> list[SigningKey]:
        with self.db.sessionmaker() as session:  # a plain reader, even inside a write
            return list(session.scalars(select(SigningKey).order_by(SigningKey.kid)))

    def _load(self) -> None:
        now = self.clock()
        rows = self._rows()
        if not rows:
            with self.db.transaction() as session:
                if session.scalar(select(SigningKey.kid).limit(1)) is None:
                    session.add(self._new_row(now))
            rows = self._rows()
        keys = {}
        for row in rows:
            entry = self._keys.get(row.kid)
            if entry is None:
                private = self._decrypt(row.kid, row.private_key_encrypted)
                public = private.public_key()
                entry = KeyEntry(row.kid, private, public, {
                    **OKPAlgorithm.to_jwk(public, as_dict=True), "kid": row.kid, "use": "sig", "alg": "EdDSA"})
            keys[row.kid] = entry
        current = keys[rows[-1].kid]  # ULIDs sort by creation: the newest key signs
        self._published = [keys[row.kid].jwk for row in rows
                           if row.kid == current.kid or row.publish_until is None or row.publish_until > now]
        self._published_kids = frozenset(jwk["kid"] for jwk in self._published)
        self._keys, self._current = keys, current
        self._loaded_at = time.monotonic()

    def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at >= self.cache_seconds:
            with self._lock:
                if time.monotonic() - self._loaded_at >= self.cache_seconds:
                    self._load()

    def current(self) -> KeyEntry:
        self._fresh()
        assert self._current is not None  # _fresh() has loaded the keys (making the first one if none)
        return self._current

    def signing_key(self, kid: str) -> KeyEntry | None:
        """The key `kid` from the cache as it is (for signing with a kid just read from it)."""
        return self._keys.get(kid) or self.get(kid)

    def get(self, kid: str) -> KeyEntry | None:
        """A published key by id; an unknown id triggers one early reload (rate-limited)."""
        self._fresh()
        entry = self._keys.get(kid)
        if entry is None and time.monotonic() - self._forced_at >= FORCED_RELOAD_INTERVAL:
            with self._lock:
                self._forced_at = time.monotonic()
                self._load()
            entry = self._keys.get(kid)
        if entry is None or kid not in self._published_kids:
            return None
        return entry

    def jwks(self) -> dict:
        self._fresh()
        return {"keys": list(self._published)}
