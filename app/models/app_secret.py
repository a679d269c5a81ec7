from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class AppSecretFingerprint(Base):
    """The one row that says which APP_SECRET the database's hashes and seals belong to: a keyed
    hash of the secret by itself (`app.security.crypto.secret_fingerprint`), never the secret.
    Written on the first start after the upgrade that made it, and by `secrets rotate`."""

    __tablename__ = "app_secret_fingerprints"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    fingerprint: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
