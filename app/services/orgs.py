"""Organizations and their API keys."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cors import DEFAULT_ALLOWED_ORIGINS
from app.db import utcnow
from app.models import ApiKey, Organization, OrganizationSettings, new_id
from app.models.base import MODES
from app.security.keys import generate_key_value, key_lookup


def create_key(session: Session, app_secret: str, organization_id: str, mode: str, key_type: str,
               rolled_from_id: str | None = None, scopes: list[str] | None = None) -> tuple[ApiKey, str]:
    """Create a key; return the row and the value, which is never available again. `scopes`
    belong to restricted keys only (checked against the creator's by the caller)."""
    value = generate_key_value(key_type, mode)
    key = ApiKey(id=new_id("key"), organization_id=organization_id, mode=mode, type=key_type,
                 lookup=key_lookup(app_secret, key_type, value), last4=value[-4:],
                 created_at=utcnow(), rolled_from_id=rolled_from_id,
                 scopes=sorted(scopes or ()) if key_type == "restricted" else None)
    session.add(key)
    return key, value


def create_organization(session: Session, app_secret: str, name: str) -> dict:
    """An organization with default settings, a publishable and a secret key in each mode."""
    org = Organization(id=new_id("org"), name=name, created_at=utcnow())
    session.add(org)
    session.flush()
    keys: dict = {}
    for mode in MODES:
        session.add(OrganizationSettings(organization_id=org.id, mode=mode,
                                         allowed_origins=list(DEFAULT_ALLOWED_ORIGINS[mode])))
        _, publishable = create_key(session, app_secret, org.id, mode, "publishable")
        _, secret = create_key(session, app_secret, org.id, mode, "secret")
        keys[mode] = {"publishableKey": publishable, "secretKey": secret}
    return {"organizationId": org.id, "keys": keys}


def live_keys_query(organization_id: str, mode: str, now: datetime):
    return (select(ApiKey)
            .where(ApiKey.organization_id == organization_id, ApiKey.mode == mode,
                   ApiKey.revoked_at.is_(None))
            .where((ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now))
            .order_by(ApiKey.id))


def roll_key(session: Session, app_secret: str, key: ApiKey, expires_in: int, now: datetime) -> tuple[ApiKey, str]:
    """Issue a successor; the old value keeps working for `expires_in` seconds, then never."""
    new_expiry = now + timedelta(seconds=expires_in)
    if key.expires_at is None or key.expires_at > new_expiry:
        key.expires_at = new_expiry
    return create_key(session, app_secret, key.organization_id, key.mode, key.type, rolled_from_id=key.id,
                      scopes=key.scopes)
