from __future__ import annotations

from flask.views import MethodView

from app.api.admin import blp
from app.api.helpers import transaction
from app.api.security import current_context, requires
from app.models import Organization
from app.schemas.admin import SettingsSchema


@blp.route("/settings")
class Settings(MethodView):
    @requires("secret")
    @blp.response(200, SettingsSchema)
    def get(self):
        """Read the organization's settings

        Settings apply to both modes.
        """
        return current_context().organization

    @requires("secret")
    @blp.arguments(SettingsSchema(), example={"accessTokenTtl": 900})
    @blp.response(200, SettingsSchema)
    def patch(self, data):
        """Change the organization's settings

        Send any subset of the fields; the answer is the whole settings object.
        """
        ctx = current_context()
        with transaction() as session:
            organization = session.get(Organization, ctx.organization_id)
            for name, value in data.items():
                setattr(organization, name, value)
        return organization
