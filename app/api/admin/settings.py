from __future__ import annotations

from flask.views import MethodView

from app.api.admin import blp
from app.api.helpers import app_secret, now, transaction
from app.api.security import current_context, requires
from app.schemas.admin import SettingsOut, SettingsSchema
from app.services.orgs import update_settings


@blp.route("/settings")
class Settings(MethodView):
    @requires("secret", scope="settings:write")
    @blp.response(200, SettingsOut)
    def get(self):
        """Read the settings of the key's mode

        Settings belong to one mode: a test key reads test settings, a live key live settings.
        """
        return current_context().organization

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
