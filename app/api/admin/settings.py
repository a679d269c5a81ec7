from __future__ import annotations

from flask.views import MethodView

from app.api.admin import blp
from app.api.helpers import now, transaction
from app.api.security import current_context, requires
from app.models import OrganizationSettings
from app.schemas.admin import SettingsSchema
from app.services import audit


@blp.route("/settings")
class Settings(MethodView):
    @requires("secret", scope="settings:write")
    @blp.response(200, SettingsSchema)
    def get(self):
        """Read the settings of the key's mode

        Settings belong to one mode: a test key reads test settings, a live key live settings.
        """
        return current_context().organization

    @requires("secret", scope="settings:write")
    @blp.arguments(SettingsSchema(), example={"accessTokenTtl": 900})
    @blp.response(200, SettingsSchema)
    def patch(self, data):
        """Change the settings of the key's mode

        Send any subset of the fields; the answer is the whole settings object. A test key never
        changes live settings.
        """
        ctx = current_context()
        schema = SettingsSchema()
        with transaction() as session:
            settings = session.get(OrganizationSettings, (ctx.organization_id, ctx.mode),
                                   with_for_update=True)  # the audit's "old" is the value replaced
            before = schema.dump(settings)
            for name, value in data.items():
                setattr(settings, name, value)
            changed = audit.changes(before, schema.dump(settings))
            if changed:
                audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "settings.updated",
                             ("settings", ctx.organization_id), {"changes": changed}, now())
        return settings
