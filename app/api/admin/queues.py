from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from app.api.admin import blp
from app.api.helpers import now
from app.api.security import current_context, requires
from app.openapi import ErrorSchema
from app.schemas.queues import QueueIn, QueueListArgs, QueueOut, QueuePage
from app.services import audit, queues


@blp.route("/queues")
class Queues(MethodView):
    @requires("secret", scope="queues:read")
    @blp.arguments(QueueListArgs(), location="query")
    @blp.response(200, QueuePage)
    def get(self, args):
        """List queues

        Optionally of one experience (`experienceId`); keyset paging with `limit` and `startingAfter`.
        """
        ctx, usher = current_context(), current_app.extensions["usher"]
        return queues.list_queues(usher.stores.queues, usher.reader(), ctx.organization_id, ctx.mode,
                                  args.get("experience_id"), args["limit"], args.get("starting_after"), now())

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
        ctx, usher = current_context(), current_app.extensions["usher"]
        with usher.db.write() as connection:
            queue = queues.create_queue(usher.stores.queues, connection, ctx.organization_id, ctx.mode, data, now())
            audit.record(connection, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "queue.created",
                         ("queue", queue.id), {"experienceId": queue.experience_id, "name": queue.name,
                                               "capacity": queue.capacity}, now())
            return queues.queue_view(usher.stores.queues, connection, queue, now())
