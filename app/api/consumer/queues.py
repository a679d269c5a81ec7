"""Queues for consumers: read one, enter, poll the place, leave. Persistence is the app's
queue store (`Usher.stores.queues`), handed to the services with the connection."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from app.api.consumer import blp
from app.api.consumer.challenge import CHALLENGE_HEADER, CHALLENGE_REFUSED, guard
from app.api.helpers import ID_SHAPE, json_response, now
from app.api.security import current_context, requires
from app.errors import ApiError
from app.openapi import ErrorSchema
from app.schemas.queues import QueueConsumerState, QueueOut
from app.services import queues
from app.state import Usher

_UNAVAILABLE = ("`service_unavailable`: the database cannot be reached, a statement or lock wait ran past its "
                "timeout, or every connection of the pool is busy; retry after `Retry-After`, and keep to "
                "`pollAfter` between status calls")


def _queue_id(queue_id: str) -> str:
    """The id, if it has our shape; else the queue's 404 without asking the database."""
    if not ID_SHAPE.fullmatch(queue_id):
        raise ApiError("not_found", "Queue not found")
    return queue_id


def _consumer_id(consumer_id: str | None) -> str:
    """The caller's consumer (an access token always names one)."""
    if consumer_id is None:
        raise ApiError("not_found", "Queue not found")
    return consumer_id


def _usher() -> Usher:
    return current_app.extensions["usher"]


@blp.route("/queues/<string:queue_id>")
class QueueById(MethodView):
    @requires("publishable", "secret", scope="queues:read")
    @blp.response(200, QueueOut)
    @blp.alt_response(404, schema=ErrorSchema, description="Queue not found")
    def get(self, queue_id):
        """Get a queue

        With the publishable key (browsers) or the secret key (servers).
        """
        ctx, usher = current_context(), _usher()
        reader = usher.reader()
        queue = queues.queue_for_tenant(usher.stores.queues, reader, queue_id, ctx.organization_id, ctx.mode)
        return queues.queue_view(usher.stores.queues, reader, queue, now())


@blp.route("/queues/<string:queue_id>/enter")
class EnterQueue(MethodView):
    @requires("access")
    @blp.doc(parameters=[CHALLENGE_HEADER])
    @blp.response(200, QueueConsumerState)
    @blp.alt_response(403, schema=ErrorSchema, description="`identification_required`: the queue's admission is "
                                                           "`identified` and the caller is a guest; "
                                                           + CHALLENGE_REFUSED)
    @blp.alt_response(404, schema=ErrorSchema, description="Queue not found")
    @blp.alt_response(409, schema=ErrorSchema, description="The queue is pending, closed or full")
    @blp.alt_response(503, schema=ErrorSchema, description=_UNAVAILABLE)
    def post(self, queue_id):
        """Enter a queue

        Idempotent: entering again returns the place already held. Places are first come, first
        served. A queue whose `admission` is `identified` refuses guests.
        """
        ctx = current_context()
        guard("queue_enter")
        queue_id = _queue_id(queue_id)
        usher = _usher()
        consumer_id = _consumer_id(ctx.consumer_id)
        with usher.db.write() as connection:
            state = queues.enter(usher.stores.queues, connection, queue_id, consumer_id, ctx.organization_id,
                                 ctx.mode, now())
        return json_response(state)


@blp.route("/queues/<string:queue_id>/status")
class QueueStatus(MethodView):
    @requires("access", session_check="in_view")  # polled: the session is read in the state query
    @blp.response(200, QueueConsumerState)
    @blp.alt_response(404, schema=ErrorSchema, description="Queue not found, or not entered")
    @blp.alt_response(503, schema=ErrorSchema, description=_UNAVAILABLE)
    def get(self, queue_id):
        """Get the caller's place in a queue

        The consumer's state in the queue (its position while waiting); 404 when it never entered.
        """
        ctx = current_context()
        queue_id = _queue_id(queue_id)
        usher = _usher()
        state = queues.consumer_state(usher.stores.queues, usher.reader(), queue_id, _consumer_id(ctx.consumer_id),
                                      ctx.organization_id, ctx.mode, ctx.pending_session)
        return json_response(state)


@blp.route("/queues/<string:queue_id>/leave")
class LeaveQueue(MethodView):
    @requires("access")
    @blp.response(200, QueueConsumerState)
    @blp.alt_response(404, schema=ErrorSchema, description="Queue not found, or not entered")
    def post(self, queue_id):
        """Leave a queue

        Gives the place up; the consumers behind move forward. Leaving again changes nothing.
        """
        ctx = current_context()
        usher = _usher()
        consumer_id = _consumer_id(ctx.consumer_id)
        with usher.db.write() as connection:
            state = queues.leave(usher.stores.queues, connection, queue_id, consumer_id, ctx.organization_id, ctx.mode,
                                 now())
        return json_response(state)
