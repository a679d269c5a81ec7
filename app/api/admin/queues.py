from __future__ import annotations

from flask.views import MethodView
from sqlalchemy import select

from app.api.admin import blp
from app.api.helpers import db_session, now, tenant_get, transaction
from app.api.security import current_context, requires
from app.errors import ApiError
from app.models import Experience, Queue, new_id
from app.openapi import ErrorSchema
from app.schemas.queues import QueueIn, QueueListArgs, QueueOut, QueuePage
from app.services import audit, queues
from app.services.paging import page


@blp.route("/queues")
class Queues(MethodView):
    @requires("secret", scope="queues:read")
    @blp.arguments(QueueListArgs(), location="query")
    @blp.response(200, QueuePage)
    def get(self, args):
        """List queues

        Optionally of one experience (`experienceId`); keyset paging with `limit` and `startingAfter`.
        """
        ctx = current_context()
        session = db_session()
        query = select(Queue).where(Queue.organization_id == ctx.organization_id, Queue.mode == ctx.mode)
        if args.get("experience_id"):
            query = query.where(Queue.experience_id == args["experience_id"])
        result = page(session, query, Queue.id, args["limit"], args.get("starting_after"))
        zones = dict(session.execute(select(Experience.id, Experience.time_zone).where(
            Experience.id.in_({q.experience_id for q in result["data"]}))).all())
        result["data"] = [queues.queue_view(session, q, zones.get(q.experience_id), now()) for q in result["data"]]
        return result

    @requires("secret", scope="queues:write")
    @blp.arguments(QueueIn(), example={"experienceId": "exp_01HXYZ123456789ABCDEFGHJK", "name": "Main queue",
                                     "capacity": 1000})
    @blp.response(201, QueueOut)
    @blp.alt_response(400, schema=ErrorSchema, description="Validation error, or an unknown experience")
    def post(self, data):
        """Create a queue

        Under an experience of the same organization and mode; `capacity` bounds how many
        consumers may hold a place at once.
        """
        ctx = current_context()
        with transaction() as session:
            try:
                experience = tenant_get(session, Experience, data["experience_id"], ctx)
            except ApiError:
                raise ApiError("validation_error", details={"experienceId": ["Unknown experience."]}) from None
            queue = Queue(id=new_id("queue"), organization_id=ctx.organization_id, mode=ctx.mode,
                          created_at=now(), next_sequence=0, **data)
            session.add(queue)
            audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "queue.created",
                         ("queue", queue.id), {"experienceId": experience.id, "name": queue.name,
                                               "capacity": queue.capacity}, now())
            return queues.queue_view(session, queue, experience.time_zone, now())
