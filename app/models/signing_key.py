from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class SigningKey(Base):
    """An Ed25519 signing key. The private half is AES-GCM encrypted with a key derived from
    APP_SECRET. `purpose` is `access` (published in the JWKS), `refresh` (never published) or
    `legacy` (made before purposes: both). The latest key whose `activates_at` has passed signs;
    replaced keys verify until `publish_until`; a `retired_at` key verifies nothing."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(40), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary(128))
    purpose: Mapped[str] = mapped_column(String(16), default="access")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activates_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]
    publish_until: Mapped[datetime | None]
