from __future__ import annotations

from flask.views import MethodView

from app.api.consumer import blp
from app.api.helpers import db_session, tenant_get
from app.api.security import current_context, requires
from app.models import Experience
from app.openapi import ErrorSchema
from app.schemas.admin import ExperienceOut


@blp.route("/experiences/<string:experience_id>")
class ExperienceById(MethodView):
    @requires("publishable", "secret", scope="experiences:read")
    @blp.response(200, ExperienceOut)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown experience, or one of another organization or mode")
    def get(self, experience_id):
        """Get an experience

        With the publishable key (browsers) or the secret key (servers) of its organization and mode.
        """
        return tenant_get(db_session(), Experience, experience_id, current_context())
