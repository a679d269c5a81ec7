from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView

from app.api.admin import blp
from app.api.helpers import app_secret, now, transaction
from app.api.security import current_context, requires
from app.registry import stored_plugin_settings
from app.schemas.admin import SettingsOut, SettingsSchema
from app.security.callers import OrganizationSnapshot
from app.services.orgs import update_settings


class WithPluginSettings:
    """The caller's settings snapshot and its mode's stored plugin settings, as `SettingsOut`
    dumps them (the snapshot read with the key carries no plugin settings)."""

    def __init__(self, snapshot: OrganizationSnapshot, plugin_settings: dict[str, Any]):
        self._snapshot, self.plugin_settings = snapshot, plugin_settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._snapshot, name)


@blp.route("/settings")
class Settings(MethodView):
    @requires("secret", scope="settings:write")
    @blp.response(200, SettingsOut)
    def get(self):
        """Read the settings of the key's mode

        Settings belong to one mode: a test key reads test settings, a live key live settings.
        """
        ctx = current_context()
        if not current_app.extensions["usher_registry"].settings_fields:  # no `plugins` to show
            return ctx.organization
        usher = current_app.extensions["usher"]
        return WithPluginSettings(ctx.organization, stored_plugin_settings(usher.db, ctx.organization_id, ctx.mode))

    @requires("secret", scope="settings:write")
    @blp.arguments(SettingsSchema(), example={"accessTokenTtl": 900})
    @blp.response(200, SettingsOut)
    def patch(self, data):
        """Change the settings of the key's mode

        Send any subset of the fields; the answer is the whole settings object. A test key never
        changes live settings. `botDefenseSecret` is write-only: sealed at rest, never returned.
        """
        with transaction() as session:
            after = update_settings(session, current_context(), data, now(), app_secret())
        return after
