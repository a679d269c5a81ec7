"""Settings: every setting of the key's mode (`PATCH /settings`'s schema and rules), and the
enabled grant plugins' settings after Usher's own."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError, fields

from app.api.helpers import now, transaction
from app.dashboard.common import bp, ctx, error_messages, requires_scope, usher
from app.errors import ApiError
from app.registry import stored_plugin_settings
from app.schemas.admin import SettingsSchema
from app.services.orgs import update_settings


@dataclass(frozen=True)
class SettingField:
    key: str  # the API's name (data key)
    name: str  # the attribute
    hint: str
    is_list: bool  # a list field is a textarea, one entry a line
    write_only: bool = False  # a secret: never shown, left empty to keep the stored one
    numeric: bool = False
    nullable: bool = False  # an empty input means "none"

    @property
    def seconds(self) -> bool:
        """A duration in seconds: the page shows it in days, hours and minutes too."""
        return self.numeric and self.hint.startswith("Seconds")


# Where the API's description only repeats the page's label, the page says what the label does not.
SETTINGS_HINTS = {
    "accessTokenTtl": "Seconds (1 s – 1 day). Shorter is safer; the SDK refreshes before expiry.",
    "refreshTokenTtl": "Seconds (1 min – 1 year): how long a shopper stays signed in without coming back.",
    "otpCooldown": "Seconds before the same email or phone can be sent another code.",
    "otpRequestsPerHour": "Per email or phone; past it, code requests answer `rate_limited` until the hour ends.",
    "otpRequestsPerIpPerHour": "Per client address (IPv6: per /64). Raise it for drops behind shared addresses.",
    "otpVerifiesPerIpPerHour": "Per client address, wrong and right codes alike.",
}
SETTINGS_FIELDS = [SettingField(field.data_key or name, name,
                                SETTINGS_HINTS.get(field.data_key or name, field.metadata.get("description", "")),
                                isinstance(field, fields.List), field.load_only, isinstance(field, fields.Integer),
                                field.allow_none)
                   for name, field in SettingsSchema().fields.items()
                   if not field.dump_only and name != "plugin_settings"]
PLUGIN_PREFIX = "plugins."  # a plugin's field in the form: `plugins.<its API name>`


def _plugin_fields() -> list[SettingField]:
    """The settings fields of the app's enabled grant plugins (the registry), after Usher's own."""
    return [SettingField(PLUGIN_PREFIX + name, name, field.metadata.get("description", ""), False)
            for name, field in current_app.extensions["usher_registry"].settings_fields.items()]
SETTINGS_LABELS = {"accessTokenTtl": "Access token lifetime", "refreshTokenTtl": "Refresh token lifetime",
                   "otpTtl": "Code lifetime", "otpLength": "Code length", "otpCooldown": "Code cooldown",
                   "otpRequestsPerHour": "Codes per identifier per hour",
                   "otpRequestsPerIpPerHour": "Code requests per address per hour",
                   "otpVerifiesPerIpPerHour": "Verify attempts per address per hour",
                   "allowedOrigins": "Allowed browser origins",
                   "smsAllowedCountries": "Countries SMS codes may go to (this mode)",
                   "smsPerHour": "SMS codes per hour (this mode)",
                   "botDefense": "Bot defense", "botDefenseRoutes": "Routes that need a solved challenge",
                   "botDefenseSiteKey": "Captcha site key", "botDefenseSecret": "Captcha secret key",
                   "altchaComplexity": "ALTCHA complexity"}


def _submitted_setting(field: SettingField):
    """A form field as the API would receive it: lists one entry a line, an empty nullable
    field as none, an empty secret left out (the stored one is kept)."""
    if field.is_list:
        return [line.strip() for line in request.form.get(field.key, "").splitlines() if line.strip()]
    value = request.form.get(field.key, "")
    return None if field.nullable and not value.strip() else value


def _flat(messages) -> list[str]:
    """A field's messages as one list (a list field's are keyed by the entry's index)."""
    if isinstance(messages, dict):
        return [m for key in sorted(messages, key=str) for m in _flat(messages[key])]
    return list(messages)


@bp.route("/settings", methods=["GET", "POST"])
@requires_scope("settings:write")
def settings():
    """Every setting of the key's mode, validated by `SettingsSchema` as `PATCH /settings` is."""
    current = ctx().organization  # the settings of the key's mode, read with the key
    values = {f.key: "" if f.write_only else getattr(current, f.name) for f in SETTINGS_FIELDS}
    plugin_fields = _plugin_fields()
    if plugin_fields:
        stored = stored_plugin_settings(usher().db, ctx().organization_id, ctx().mode)
        plugin_values = current_app.extensions["usher_registry"].settings_values(stored)
        values.update({f.key: plugin_values[f.name] for f in plugin_fields})
    errors: dict = {}
    if request.method == "POST":
        submitted = {f.key: _submitted_setting(f) for f in SETTINGS_FIELDS
                     if not (f.write_only and not request.form.get(f.key))}
        if plugin_fields:
            submitted["plugins"] = {f.name: request.form.get(f.key, "") for f in plugin_fields}
        try:
            data = SettingsSchema().load(submitted)
            with transaction() as db:
                update_settings(db, ctx(), data, now(), usher().settings.app_secret)
        except ValidationError as error:
            errors = {key: _flat(messages) for key, messages in error_messages(error).items() if key != "plugins"}
            errors.update({PLUGIN_PREFIX + name: _flat(messages)
                           for name, messages in error_messages(error).get("plugins", {}).items()})
        except ApiError as error:  # a rule across fields (a captcha needs its keys)
            if error.error != "validation_error":
                raise
            errors = {key: _flat(messages) for key, messages in (error.details or {}).items()}
        else:
            flash("Settings saved.", "info")
            return redirect(url_for("dashboard.settings"), 303)
        values = {**{f.key: "" if f.write_only else submitted.get(f.key, "") for f in SETTINGS_FIELDS},
                  **{f.key: submitted["plugins"][f.name] for f in plugin_fields}}
    return render_template("dashboard/settings.html", fields=SETTINGS_FIELDS + plugin_fields, labels=SETTINGS_LABELS,
                           values=values, errors=errors, secret_set=current.bot_defense_secret is not None), \
        400 if errors else 200
