"""Key values: generation, keyed hashing, constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
KEY_BODY_LENGTH = 32  # 32 base62 characters: about 190 random bits
PREFIXES = {"publishable": "pk", "secret": "sk", "restricted": "rk"}


def generate_key_value(key_type: str, mode: str) -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(KEY_BODY_LENGTH))
    return f"{PREFIXES[key_type]}_{mode}_{body}"


def keyed_hash(app_secret: str, *parts: str) -> str:
    """HMAC-SHA256 over the parts, keyed with APP_SECRET: how secrets are stored."""
    message = "\x1f".join(parts).encode()
    return hmac.new(app_secret.encode(), message, hashlib.sha256).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def parse_key(value: str) -> tuple[str, str] | None:
    """Return (type, mode) of a well-formed key value, else None."""
    parts = value.split("_", 2)
    if len(parts) != 3 or parts[1] not in ("test", "live") or len(parts[2]) != KEY_BODY_LENGTH:
        return None
    for key_type, prefix in PREFIXES.items():
        if parts[0] == prefix:
            return key_type, parts[1]
    return None


def key_lookup(app_secret: str, key_type: str, value: str) -> str:
    """What the api_keys.lookup column holds for this value."""
    return value if key_type == "publishable" else keyed_hash(app_secret, "api-key", value)
