"""Organizations and their API keys."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.botdefense import seal_secret
from app.cors import DEFAULT_ALLOWED_ORIGINS
from app.db import utcnow
from app.errors import ApiError
from app.models import ApiKey, Organization, OrganizationSettings, new_id
from app.models.base import MODES
from app.schemas.admin import SettingsSchema
from app.security.crypto import short_fingerprint
from app.security.keys import generate_key_value, key_lookup
from app.security.scopes import insufficient_scope, key_scopes, missing
from app.services import audit


def create_key(session: Session, app_secret: str, organization_id: str, mode: str, key_type: str,
               rolled_from_id: str | None = None, scopes: list[str] | None = None) -> tuple[ApiKey, str]:
    """Create a key; return the row and the value, which is never available again. `scopes`
    belong to restricted keys only (checked against the creator's by the caller)."""
    value = generate_key_value(key_type, mode)
    key = ApiKey(id=new_id("key"), organization_id=organization_id, mode=mode, type=key_type,
                 lookup=key_lookup(app_secret, key_type, value), last4=value[-4:],
                 lookup_fingerprint=None if key_type == "publishable" else short_fingerprint(app_secret),
                 created_at=utcnow(), rolled_from_id=rolled_from_id,
                 scopes=sorted(scopes or ()) if key_type == "restricted" else None)
    session.add(key)
    return key, value


def create_organization(session: Session, app_secret: str, name: str, actor: audit.Actor | None = None) -> dict:
    """An organization with default settings, a publishable and a secret key in each mode; with
    an `actor` (the CLI), each key's `key.created` event in its mode's audit chain."""
    now = utcnow()
    org = Organization(id=new_id("org"), name=name, created_at=now)
    session.add(org)
    session.flush()
    keys: dict = {}
    for mode in MODES:
        session.add(OrganizationSettings(organization_id=org.id, mode=mode,
                                         allowed_origins=list(DEFAULT_ALLOWED_ORIGINS[mode])))
        made = [create_key(session, app_secret, org.id, mode, key_type) for key_type in ("publishable", "secret")]
        if actor is not None:
            for key, _value in made:
                _audit_created(session, actor, key, now)
        keys[mode] = {"publishableKey": made[0][1], "secretKey": made[1][1]}
    return {"organizationId": org.id, "keys": keys}


def _audit_created(session: Session, actor: audit.Actor, key: ApiKey, now: datetime) -> None:
    audit.record(session, key.organization_id, key.mode, actor, "key.created", ("key", key.id),
                 {"type": key.type, "scopes": sorted(key_scopes(key.type, key.scopes)), "last4": key.last4}, now)


def create_key_by_cli(session: Session, app_secret: str, organization_id: str, mode: str,
                      key_type: str) -> tuple[ApiKey, str]:
    """A publishable or secret key for an existing organization (`org keys create`), audited
    with the CLI as actor: the way back when a mode has lost its secret keys."""
    if session.get(Organization, organization_id) is None:
        raise ApiError("not_found", f"There is no organization {organization_id}.")
    now = utcnow()
    key, value = create_key(session, app_secret, organization_id, mode, key_type)
    _audit_created(session, audit.CLI, key, now)
    return key, value


def live_keys_query(organization_id: str, mode: str, now: datetime):
    return (select(ApiKey)
            .where(ApiKey.organization_id == organization_id, ApiKey.mode == mode,
                   ApiKey.revoked_at.is_(None))
            .where((ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now))
            .order_by(ApiKey.id))


def live_keys(session: Session, organization_id: str, mode: str, now: datetime) -> list[ApiKey]:
    """The keys of a tenant that still work (neither revoked nor expired), oldest first."""
    return list(session.scalars(live_keys_query(organization_id, mode, now)))


def roll_key(session: Session, app_secret: str, key: ApiKey, expires_in: int, now: datetime) -> tuple[ApiKey, str]:
    """Issue a successor; the old value keeps working for `expires_in` seconds, then never."""
    new_expiry = now + timedelta(seconds=expires_in)
    if key.expires_at is None or key.expires_at > new_expiry:
        key.expires_at = new_expiry
    return create_key(session, app_secret, key.organization_id, key.mode, key.type, rolled_from_id=key.id,
                      scopes=key.scopes)


# -- what a caller does with keys and settings: the rules and the audit event of each, in the
#    caller's transaction; the admin API and the dashboard both call these -------------------
SELF_REVOKE = "A key cannot revoke itself; use another secret key or roll it."


def active_key(key: ApiKey, now: datetime) -> ApiKey:
    """A key of the caller's tenant that still works; a revoked or expired one is not found."""
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        raise ApiError("not_found")
    return key


def no_escalation(ctx, key_type: str, scopes) -> None:
    """A key creates or rolls only keys whose scopes are within its own (403 naming the rest)."""
    lacking = missing(ctx.scopes, key_scopes(key_type, scopes))
    if lacking:
        raise insufficient_scope(*lacking)


def create_key_for(session: Session, app_secret: str, ctx, key_type: str, scopes: list[str] | None,
                   now: datetime) -> tuple[ApiKey, str]:
    """Create a key of the caller's tenant (no escalation), audited."""
    no_escalation(ctx, key_type, scopes)
    key, value = create_key(session, app_secret, ctx.organization_id, ctx.mode, key_type, scopes=scopes)
    _audit_created(session, audit.Actor.of(ctx), key, now)
    return key, value


def roll_key_for(session: Session, app_secret: str, ctx, key: ApiKey, expires_in: int,
                 now: datetime) -> tuple[ApiKey, str]:
    """Roll an active key of the caller's tenant (no escalation), audited."""
    no_escalation(ctx, active_key(key, now).type, key.scopes)
    new_key, value = roll_key(session, app_secret, key, expires_in, now)
    old_expires_at = key.expires_at or now  # roll_key has just set it (never later than now + expiresIn)
    audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "key.rolled", ("key", key.id),
                 {"newKeyId": new_key.id, "type": key.type, "oldExpiresAt": audit.instant(old_expires_at),
                  "last4": new_key.last4}, now)
    return new_key, value


LAST_SECRET = ("This is the last secret key of this mode: create another one (or roll this one) "
               "before revoking it.")


def revoke_key_for(session: Session, ctx, key: ApiKey, now: datetime) -> None:
    """Revoke an active key, audited. A key cannot revoke itself (roll it instead), revokes only
    keys whose scopes are within its own (the create and roll rule), and never a mode's last
    secret key, so a merchant cannot lock itself out, by mistake or by a leaked restricted key."""
    if key.id == ctx.key_id:
        raise ApiError("conflict", SELF_REVOKE)
    no_escalation(ctx, active_key(key, now).type, key.scopes)
    if key.type == "secret":
        others = session.scalars(live_keys_query(ctx.organization_id, ctx.mode, now)
                                 .where(ApiKey.type == "secret", ApiKey.id != key.id).with_for_update())
        if next(iter(others), None) is None:
            raise ApiError("validation_error", LAST_SECRET, details={"keyId": [LAST_SECRET]})
    key.revoked_at = now
    audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "key.revoked", ("key", key.id),
                 {"type": key.type, "last4": key.last4}, now)


CAPTCHA_PROVIDERS = ("turnstile", "hcaptcha")


def update_settings(session: Session, ctx, data: dict, now: datetime, app_secret: str) -> OrganizationSettings:
    """Apply validated settings (`SettingsSchema`) to the caller's mode only (a test key never
    changes live settings), audited with each field's exact old and new value (the row is
    locked). A captcha secret is sealed, and its change audited without the value. Returns the
    mode's settings."""
    schema = SettingsSchema()
    settings = session.get_one(OrganizationSettings, (ctx.organization_id, ctx.mode),
                               with_for_update=True)  # the audit's "old" is the value replaced
    before = schema.dump(settings)
    data = dict(data)
    secret = data.pop("bot_defense_secret", None)
    for name, value in data.items():
        if name == "plugin_settings":  # any subset of the plugins' fields: merged
            value = {**(settings.plugin_settings or {}), **value}
        setattr(settings, name, value)
    if settings.bot_defense in CAPTCHA_PROVIDERS and not (settings.bot_defense_site_key and
                                                          (secret or settings.bot_defense_secret)):
        raise ApiError("validation_error", details={"botDefense": [
            f"{settings.bot_defense} needs botDefenseSiteKey and botDefenseSecret."]})
    changed = audit.changes(before, schema.dump(settings))
    if secret is not None:
        changed["botDefenseSecret"] = {"old": "(sealed)" if settings.bot_defense_secret else None, "new": "(sealed)"}
        settings.bot_defense_secret = seal_secret(app_secret, ctx.organization_id, ctx.mode, secret)
        changed.pop("botDefenseSecretSet", None)
    if changed:
        audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "settings.updated",
                     ("settings", ctx.organization_id), {"changes": changed}, now)
    return settings
