from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from marshmallow import (
    ValidationError,
    fields,
    missing,
    validate,
    validates,
    validates_schema,
)

from app import scope
from app.inputs import FullMatch
from app.models.organization import BOT_DEFENSE_ROUTES
from app.origins import MAX_ORIGINS, parse_origin_pattern
from app.otp.sms import unknown_countries
from app.schemas.common import AlwaysNull, Instant, Schema, always_sent, page_schema
from app.security.keys import PREFIXES
from app.security.scopes import SCOPES

DAY = 24 * 3600
KEY_TYPES = tuple(PREFIXES)


class Theme(Schema):
    primary_color = fields.String(data_key="primaryColor", allow_none=True,
                                  validate=FullMatch(r"#[0-9a-fA-F]{6}"))
    background_color = fields.String(data_key="backgroundColor", allow_none=True,
                                     validate=FullMatch(r"#[0-9a-fA-F]{6}"))
    logo_url = fields.Url(data_key="logoUrl", allow_none=True, schemes={"https"},
                          validate=validate.Length(max=2000))


class ExperienceIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200),
                         metadata={"example": "Holiday Sale"})
    open_at = Instant(data_key="openAt", allow_none=True)
    close_at = Instant(data_key="closeAt", allow_none=True)
    time_zone = fields.String(data_key="timeZone", allow_none=True,
                              metadata={"description": "IANA name", "example": "America/New_York"})
    theme = fields.Nested(Theme, allow_none=True)

    @validates("time_zone")
    def _time_zone(self, value, **_kwargs):
        if value is None:
            return
        if value not in _zone_names():
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValidationError("Not an IANA time zone name.") from None

    @validates_schema
    def _window(self, data, **_kwargs):
        if data.get("open_at") and data.get("close_at") and data["close_at"] <= data["open_at"]:
            raise ValidationError("Must be after openAt.", "closeAt")


_ZONES: set[str] = set()


def _zone_names() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


class ExperiencePatch(ExperienceIn):
    name = fields.String(validate=validate.Length(1, 200))


@always_sent()
class ExperienceOut(Schema):
    id = fields.String(metadata={"example": "exp_01HXYZ123456789ABCDEFGHJK"})
    name = fields.String()
    open_at = Instant(data_key="openAt", allow_none=True)
    close_at = Instant(data_key="closeAt", allow_none=True)
    time_zone = fields.String(data_key="timeZone", allow_none=True)
    theme = fields.Nested(Theme, allow_none=True)
    i18n = AlwaysNull(metadata={"description": "Reserved for translations (as in the seed); always null for now."})
    sequences = AlwaysNull(metadata={"description": "Reserved for timed sequences (as in the seed); "
                                                    "always null for now."})
    created_at = Instant(data_key="createdAt")


ExperiencePage = page_schema(ExperienceOut, "ExperiencePage")


class AltchaComplexity(fields.Field):
    """`"auto"` or a fixed `maxnumber` (stored as text: "auto" or the digits)."""

    #: marshmallow's own class attribute
    default_error_messages = {"invalid": '"auto" or a whole number from 1000 to 10000000.'}  # noqa: RUF012

    def _serialize(self, value, attr, obj, **kwargs):
        return value if value in (None, "auto") else int(value)

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "auto":
            return "auto"
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
            raise self.make_error("invalid")
        number = int(value)
        if not 1_000 <= number <= 10_000_000:
            raise self.make_error("invalid")
        return str(number)


class BotDefenseSettings(Schema):
    """A mode's bot defense (`app.botdefense`): the provider, its routes and its keys."""

    bot_defense = fields.String(data_key="botDefense", validate=validate.Length(1, 40), metadata={
        "description": "The challenge protected routes ask for: `off` (default), `altcha` (a proof of work "
                       "served and checked by Usher, no third party), `turnstile` or `hcaptcha` (the widget's "
                       "token checked at the provider; needs `botDefenseSiteKey` and `botDefenseSecret`), or "
                       "an installed plugin's bot check.",
        "enum": ["off", "altcha", "turnstile", "hcaptcha"], "example": "altcha"})
    bot_defense_routes = fields.List(
        fields.String(validate=validate.OneOf(BOT_DEFENSE_ROUTES)), data_key="botDefenseRoutes",
        validate=validate.Length(max=len(BOT_DEFENSE_ROUTES)), metadata={
            "description": "The routes that need a solved challenge in `X-Usher-Challenge`: `guest` "
                           "(`POST /auth/guest`), `otp_request` (`POST /auth/otp/request`), `queue_enter` "
                           "(`POST /queues/{id}/enter`). Default: all three.",
            "example": list(BOT_DEFENSE_ROUTES)})
    bot_defense_site_key = fields.String(
        data_key="botDefenseSiteKey", allow_none=True, validate=validate.Length(1, 200), metadata={
            "description": "Turnstile's or hCaptcha's site key (public: `GET /auth/challenge` hands it to pages).",
            "example": "0x4AAAAAAAB"})
    bot_defense_secret = fields.String(
        data_key="botDefenseSecret", load_only=True, validate=validate.Length(1, 500), metadata={
            "description": "Turnstile's or hCaptcha's secret key. Write-only: sealed at rest, never returned, "
                           "audited without its value (see `botDefenseSecretSet`).",
            "example": "0x4AAAAAAAB-secret"})
    bot_defense_secret_set = fields.Function(
        lambda settings: settings.bot_defense_secret is not None, data_key="botDefenseSecretSet", dump_only=True,
        metadata={"description": "Whether a `botDefenseSecret` is stored.", "example": False})
    altcha_complexity = AltchaComplexity(data_key="altchaComplexity", metadata={
        "description": 'ALTCHA\'s `maxnumber`: `"auto"` (default: 50,000, doubled with each doubling of this '
                       "mode's protected requests in the last minute above 600, at most 5,000,000) or a fixed "
                       "whole number from 1,000 to 10,000,000.",
        "oneOf": [{"type": "string", "enum": ["auto"]}, {"type": "integer", "minimum": 1000, "maximum": 10_000_000}],
        "example": "auto"})

    @validates("bot_defense")
    def _known_check(self, value, **_kwargs):
        """`off` or a bot check of the app's registry (built-in or plugin)."""
        known = ["off", *scope.registry().bot_checks]
        if value not in known:
            raise ValidationError(f"Must be one of: {', '.join(known)}.")

    @validates("bot_defense_routes")
    def _routes(self, value, **_kwargs):
        if len(set(value)) != len(value):
            raise ValidationError("Each route once.")


class GeneralSettings(Schema):
    access_token_ttl = fields.Integer(data_key="accessTokenTtl", validate=validate.Range(1, DAY),
                                      metadata={"description": "Seconds (1 s – 1 day)", "example": 3600})
    refresh_token_ttl = fields.Integer(data_key="refreshTokenTtl", validate=validate.Range(60, 365 * DAY),
                                       metadata={"description": "Seconds (1 min – 1 year)", "example": 2592000})
    otp_ttl = fields.Integer(data_key="otpTtl", validate=validate.Range(1, 600),
                             metadata={"description": "Seconds (1 s – 10 min)", "example": 300})
    otp_length = fields.Integer(data_key="otpLength", validate=validate.Range(6, 10),
                                metadata={"description": "Digits (6–10)", "example": 6})
    otp_cooldown = fields.Integer(data_key="otpCooldown", validate=validate.Range(1, 3600),
                                  metadata={"description": "Seconds between two codes for one identifier",
                                            "example": 30})
    otp_requests_per_hour = fields.Integer(data_key="otpRequestsPerHour", validate=validate.Range(1, 100),
                                           metadata={"description": "Codes per identifier per hour", "example": 5})
    otp_requests_per_ip_per_hour = fields.Integer(
        data_key="otpRequestsPerIpPerHour", validate=validate.Range(1, 100_000),
        metadata={"description": "Code requests per client address per hour", "example": 20})
    otp_verifies_per_ip_per_hour = fields.Integer(
        data_key="otpVerifiesPerIpPerHour", validate=validate.Range(1, 100_000),
        metadata={"description": "Verify attempts per client address per hour", "example": 30})
    allowed_origins = fields.List(fields.String(validate=validate.Length(1, 300)), data_key="allowedOrigins",
                                  validate=validate.Length(max=MAX_ORIGINS), metadata={
        "description": "Browser origins that may call the consumer API with this mode's publishable key "
                       f"(at most {MAX_ORIGINS}): exact (`https://shop.example.com`), a subdomain wildcard "
                       "(`https://*.example.com`) or a port wildcard (`http://localhost:*`). Default: the "
                       "local origins in test mode, none in live mode.",
        "example": ["https://shop.example.com", "https://*.shop.example.com"]})

    @validates("allowed_origins")
    def _origins(self, value, **_kwargs):
        problems = {}
        for index, entry in enumerate(value):
            try:
                parse_origin_pattern(entry)
            except ValueError as exc:
                problems[index] = [f"{entry!r}: {exc}"]
        if problems:
            raise ValidationError(problems)

    sms_allowed_countries = fields.List(
        fields.String(validate=validate.Length(2, 2)), data_key="smsAllowedCountries",
        validate=validate.Length(max=len(phonenumbers.SUPPORTED_REGIONS)), metadata={
            "description": "The countries (ISO 3166 alpha-2) this mode may send codes to by SMS; empty means "
                           "every country. Another country's phone is 400 `phone_country_not_allowed`, before "
                           "any message is sent. Email is not affected.",
            "example": ["US", "CA", "GB"]})
    sms_per_hour = fields.Integer(data_key="smsPerHour", validate=validate.Range(1, 1_000_000), metadata={
        "description": "SMS this mode may send per hour (all phones together); past it OTP by SMS answers 429 "
                       "`rate_limited`. Default 1000.", "example": 1000})

    plugin_settings = fields.Method("_plugin_values", "_load_plugin_values", data_key="plugins", metadata={
        "description": "The settings of the enabled login-method plugins, by name (their fields are listed "
                       "in this document); send any subset. Absent when no enabled plugin declares any.",
        "example": {}})

    def _plugin_values(self, obj):
        """Absent when no enabled grant declares settings. The stored values come with `obj`: a
        settings row has them, and `GET /settings` hands its snapshot over with them
        (`app.api.admin.settings.WithPluginSettings`)."""
        registry = scope.registry()
        if not registry.settings_fields:
            return missing
        return registry.settings_values(getattr(obj, "plugin_settings", None))

    def _load_plugin_values(self, value) -> dict:
        return scope.registry().load_settings(value)

    @validates("sms_allowed_countries")
    def _countries(self, value, **_kwargs):
        unknown = unknown_countries(value)
        if unknown:
            raise ValidationError(f"Not ISO 3166 alpha-2 country codes (upper case): {', '.join(unknown)}.")
        if len(set(value)) != len(value):
            raise ValidationError("Each country once.")


class SettingsSchema(BotDefenseSettings, GeneralSettings):
    """Every setting of a mode: `GET`/`PATCH /settings` and the dashboard's Settings page."""


@always_sent("plugin_settings", "bot_defense_secret")
class SettingsOut(SettingsSchema):
    """The settings as `GET`/`PATCH /settings` answer them: every field, always (but `plugins`,
    absent when no enabled plugin declares settings, and the write-only captcha secret)."""


@always_sent()
class KeyOut(Schema):
    id = fields.String(metadata={"example": "key_01HXYZ123456789ABCDEFGHJK"})
    type = fields.String(metadata={"enum": list(KEY_TYPES)})
    mode = fields.String(metadata={"enum": ["test", "live"]})
    last4 = fields.String()
    created_at = Instant(data_key="createdAt")
    expires_at = Instant(data_key="expiresAt", allow_none=True)
    last_used_at = Instant(data_key="lastUsedAt", allow_none=True)
    scopes = fields.List(fields.String(validate=validate.OneOf(SCOPES)), metadata={
        "description": "What the key may do: every scope for a secret key, none for a publishable key.",
        "example": ["experiences:read", "queues:read"]})


@always_sent()
class KeyCreated(KeyOut):
    key = fields.String(metadata={"description": "The key's value, shown this once."})


class KeyList(Schema):
    data = fields.List(fields.Nested(KeyOut), required=True)


class KeyCreate(Schema):
    type = fields.String(required=True, validate=validate.OneOf(KEY_TYPES))
    scopes = fields.List(fields.String(validate=validate.OneOf(SCOPES)), validate=validate.Length(1, len(SCOPES)),
                         metadata={"description": "Restricted keys only: what the key may do (at least one). "
                                                  "Only scopes the calling key holds can be given."})

    @validates_schema
    def _scopes(self, data, **_kwargs):
        if data["type"] == "restricted" and not data.get("scopes"):
            raise ValidationError("A restricted key needs its scopes.", "scopes")
        if data["type"] != "restricted" and "scopes" in data:
            raise ValidationError("Only restricted keys have scopes.", "scopes")
        if len(set(data.get("scopes") or ())) != len(data.get("scopes") or ()):
            raise ValidationError("Each scope once.", "scopes")


class KeyRoll(Schema):
    expires_in = fields.Integer(data_key="expiresIn", load_default=0, validate=validate.Range(0, 30 * DAY),
                                metadata={"description": "Seconds the old value keeps working (0 = now)."})
