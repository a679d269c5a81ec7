from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

#: The routes a mode's bot defense can protect (all of them by default).
BOT_DEFENSE_ROUTES = ("guest", "otp_request", "queue_enter")


class Organization(Base):
    """A merchant, with settings per mode (`OrganizationSettings`)."""

    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OrganizationSettings(Base):
    """An organization's settings in one mode: a test key never changes live security."""

    __tablename__ = "organization_settings"
    __table_args__ = (CheckConstraint("mode IN ('test', 'live')", name="mode"),)

    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    mode: Mapped[str] = mapped_column(String(4), primary_key=True)
    access_token_ttl: Mapped[int] = mapped_column(default=3600)
    refresh_token_ttl: Mapped[int] = mapped_column(default=30 * 24 * 3600)
    otp_ttl: Mapped[int] = mapped_column(default=300)
    otp_length: Mapped[int] = mapped_column(default=6)
    otp_cooldown: Mapped[int] = mapped_column(default=30, server_default="30")
    otp_requests_per_hour: Mapped[int] = mapped_column(default=5, server_default="5")
    otp_requests_per_ip_per_hour: Mapped[int] = mapped_column(default=20, server_default="20")
    otp_verifies_per_ip_per_hour: Mapped[int] = mapped_column(default=30, server_default="30")
    allowed_origins: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: SMS cost controls (`app.otp.sms`): countries SMS may go to (empty: all), and SMS per hour.
    sms_allowed_countries: Mapped[list[str]] = mapped_column(JSON, default=list)
    sms_per_hour: Mapped[int] = mapped_column(default=1000, server_default="1000")
    #: Values of the settings fields grant plugins declare (`GrantPlugin.settings`), by API name;
    #: a field not set here has its declared default. Read by `app.plugins.setting`.
    plugin_settings: Mapped[dict] = mapped_column(JSON, default=dict)
    #: Bot defense (`app.botdefense`): the check protected routes ask for ("off", "altcha",
    #: "turnstile", "hcaptcha", or a plugin's), which routes, a captcha's site key and its secret
    #: (sealed under APP_SECRET, never returned), and ALTCHA's complexity ("auto" or a fixed maxnumber).
    bot_defense: Mapped[str] = mapped_column(String(40), default="off", server_default="off")
    bot_defense_routes: Mapped[list[str]] = mapped_column(JSON, default=lambda: list(BOT_DEFENSE_ROUTES))
    bot_defense_site_key: Mapped[str | None] = mapped_column(String(200))
    bot_defense_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    altcha_complexity: Mapped[str] = mapped_column(String(10), default="auto", server_default="auto")


class ApiKey(Base):
    """A publishable, secret or restricted key of one organization and mode.

    `lookup` is the publishable value itself, or HMAC-SHA256(APP_SECRET, secret value) in hex:
    a secret or restricted value is never stored. `scopes` is set for restricted keys only
    (see `app.security.scopes`).
    """

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("type IN ('publishable', 'secret', 'restricted')", name="type"),
        Index("ix_api_keys_org_mode", "organization_id", "mode"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(11))
    lookup: Mapped[str] = mapped_column(String(100), unique=True)
    #: Which APP_SECRET made `lookup` (a short fingerprint; None for publishable keys), so
    #: `secrets status` can count the keys still hashed with a fallback.
    lookup_fingerprint: Mapped[str | None] = mapped_column(String(16))
    last4: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    rolled_from_id: Mapped[str | None] = mapped_column(String(40))
    scopes: Mapped[list[str] | None] = mapped_column(JSON)
