"""Settings from the environment, with embedded development defaults.

Everything a deployment may change is read here once, in `load_config`; the rest of the
application reads `app.config` only.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

INSTANCE_DIR = Path(os.environ.get("USHER_INSTANCE_DIR", Path(__file__).resolve().parent.parent / "instance"))


def _instance_secret() -> str:
    """Return the development APP_SECRET, generating it into instance/ on first run."""
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    path = INSTANCE_DIR / "app_secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def load_config() -> dict:
    """Read the environment into a Flask config mapping."""
    return {
        "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{INSTANCE_DIR / 'usher.sqlite3'}",
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        "APP_SECRET": os.environ.get("APP_SECRET") or _instance_secret(),
        "ISSUER": os.environ.get("ISSUER", "http://127.0.0.1:8000"),
        "TRUSTED_PROXY_COUNT": _int("TRUSTED_PROXY_COUNT", 0),
        "MAX_CONTENT_LENGTH": _int("MAX_CONTENT_LENGTH", 64 * 1024),
        "TOKEN_LEEWAY_SECONDS": _int("TOKEN_LEEWAY_SECONDS", 30),
        "REFRESH_GRACE_SECONDS": _int("REFRESH_GRACE_SECONDS", 10),
        "KEYRING_CACHE_SECONDS": _int("KEYRING_CACHE_SECONDS", 5),
        "GUEST_RATE_LIMIT": os.environ.get("GUEST_RATE_LIMIT", "60 per minute"),
        "EXCHANGE_RATE_LIMIT": os.environ.get("EXCHANGE_RATE_LIMIT", "120 per minute"),
        "OTP_EMAIL_SENDER": os.environ.get("OTP_EMAIL_SENDER", "console"),
        "OTP_SMS_SENDER": os.environ.get("OTP_SMS_SENDER", "console"),
        "SMTP_HOST": os.environ.get("SMTP_HOST", "localhost"),
        "SMTP_PORT": _int("SMTP_PORT", 25),
        "SMTP_USERNAME": os.environ.get("SMTP_USERNAME"),
        "SMTP_PASSWORD": os.environ.get("SMTP_PASSWORD"),
        "SMTP_STARTTLS": os.environ.get("SMTP_STARTTLS", "false"),
        "OTP_EMAIL_FROM": os.environ.get("OTP_EMAIL_FROM", "Usher <no-reply@localhost>"),
        "SMS_WEBHOOK_URL": os.environ.get("SMS_WEBHOOK_URL"),
        "SMS_WEBHOOK_TIMEOUT": float(os.environ.get("SMS_WEBHOOK_TIMEOUT", "5")),
        "ENABLED_GRANTS": [g for g in os.environ.get("ENABLED_GRANTS", "").split(",") if g],
        "SQLITE_BUSY_TIMEOUT_MS": _int("SQLITE_BUSY_TIMEOUT_MS", 10000),
    }
