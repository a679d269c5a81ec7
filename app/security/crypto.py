"""Authenticated encryption at rest, keyed from APP_SECRET (one derived key per purpose), and
the secret's fingerprint.

During a rotation (`APP_SECRET_FALLBACKS`) a `Sealer` seals with APP_SECRET and opens with it or
any fallback, so what an earlier secret sealed stays readable until `secrets rotate` re-seals it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.security.keys import keyed_hash

#: The purposes (HKDF info) of every sealed column; `app.services.app_secret` re-seals each.
SIGNING_KEY_SEAL = "usher signing keys v1"
WEBHOOK_SECRET_SEAL = "webhook-endpoint-secret"
CAPTURE_SEAL = "usher outbox v1"
DASHBOARD_REVEAL_SEAL = "dashboard-reveal"
BOT_DEFENSE_SECRET_SEAL = "bot-defense-secret"  # a mode's captcha secret (app.botdefense)

#: How long a row's `*_fingerprint` column is: enough to tell a handful of secrets apart.
SHORT_FINGERPRINT = 16


@lru_cache(maxsize=16)
def secret_fingerprint(app_secret: str) -> str:
    """A keyed hash of the secret by itself (never the secret): what the database keeps to tell
    whether a host holds the same APP_SECRET as the others. Pure, so memoised."""
    return keyed_hash(app_secret, "usher app-secret fingerprint v1")


def short_fingerprint(app_secret: str) -> str:
    return secret_fingerprint(app_secret)[:SHORT_FINGERPRINT]


class Sealer:
    def __init__(self, app_secret: str, purpose: str, fallbacks: Sequence[str] = ()):
        self._aeads = [AESGCM(_derive(secret, purpose)) for secret in (app_secret, *fallbacks)]

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aeads[0].encrypt(nonce, plaintext, context.encode())

    def open(self, blob: bytes, context: str) -> bytes:
        return self.open_with(blob, context)[0]

    def open_with(self, blob: bytes, context: str) -> tuple[bytes, int]:
        """The plaintext and which secret opened it (0: APP_SECRET, 1…: the fallbacks in order);
        InvalidTag when none does. The current secret is tried first, so the common case is one
        decryption."""
        for index, aead in enumerate(self._aeads):
            try:
                return aead.decrypt(blob[:12], blob[12:], context.encode()), index
            except InvalidTag:
                continue
        raise InvalidTag()


def _derive(app_secret: str, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(app_secret.encode())
