from __future__ import annotations

from flask.views import MethodView

from app.api.admin import blp
from app.api.helpers import db_session, now, tenant_get, transaction
from app.api.security import current_context, requires
from app.errors import ApiError
from app.models import Experience, new_id
from app.openapi import ErrorSchema
from app.schemas.admin import (
    ExperienceIn,
    ExperienceOut,
    ExperiencePage,
    ExperiencePatch,
)
from app.schemas.common import PageArgs
from app.services import audit
from app.services.paging import page
from app.stores.admin import experiences_of


@blp.route("/experiences")
class Experiences(MethodView):
    @requires("secret", scope="experiences:read")
    @blp.arguments(PageArgs(), location="query")
    @blp.response(200, ExperiencePage)
    def get(self, args):
        """List experiences

        Newest last; keyset paging with `limit` and `startingAfter`.
        """
        ctx = current_context()
        return page(db_session(), experiences_of(ctx.organization_id, ctx.mode), Experience.id, args["limit"],
                    args.get("starting_after"))

    @requires("secret", scope="experiences:write")
    @blp.arguments(ExperienceIn(), example={"name": "Holiday Sale Queue", "openAt": "2024-12-01T09:00:00Z"})
    @blp.response(201, ExperienceOut)
    @blp.alt_response(400, schema=ErrorSchema, description="Validation error")
    def post(self, data):
        """Create an experience

        A sale or drop with optional opening and closing instants (`closeAt` after `openAt`) and
        an IANA time zone; queues are created under it.
        """
        ctx = current_context()
        current = now()
        experience = Experience(id=new_id("exp"), organization_id=ctx.organization_id, mode=ctx.mode,
                                created_at=current, updated_at=current, **data)
        with transaction() as session:
            session.add(experience)
            audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "experience.created",
                         ("experience", experience.id), {"name": experience.name}, current)
        return experience


@blp.route("/experiences/<string:experience_id>")
class ExperienceById(MethodView):
    @requires("secret", scope="experiences:write")
    @blp.arguments(ExperiencePatch(partial=True))
    @blp.response(200, ExperienceOut)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown experience")
    def patch(self, data, experience_id):
        """Update an experience

        Only the fields sent change; `null` clears an optional field.
        """
        ctx = current_context()
        with transaction() as session:
            experience = tenant_get(session, Experience, experience_id, ctx)
            session.refresh(experience, with_for_update=True)  # the audit's "old" is the value replaced
            before = ExperienceOut().dump(experience)
            open_at = data.get("open_at", experience.open_at)
            close_at = data.get("close_at", experience.close_at)
            if open_at and close_at and close_at <= open_at:
                raise ApiError("validation_error", details={"closeAt": ["Must be after openAt."]})
            for name, value in data.items():
                setattr(experience, name, value)
            experience.updated_at = now()
            changed = audit.changes(before, ExperienceOut().dump(experience))
            audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "experience.updated",
                         ("experience", experience.id), {"changes": changed}, now())
        return experience

    @requires("secret", scope="experiences:write")
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown experience")
    def delete(self, experience_id):
        """Delete an experience

        Deletes its queues and their places too. Unknown ids, and ids of another organization or
        mode, answer 404.
        """
        ctx = current_context()
        with transaction() as session:
            experience = tenant_get(session, Experience, experience_id, ctx)
            session.delete(experience)
            audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "experience.deleted",
                         ("experience", experience.id), {"name": experience.name}, now())
