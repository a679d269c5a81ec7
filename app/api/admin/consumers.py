from __future__ import annotations

from flask.views import MethodView

from app.api.admin import blp
from app.api.helpers import db_session, events, now, tenant_get, transaction
from app.api.security import current_context, requires
from app.models import AuthSession, Consumer
from app.openapi import ErrorSchema
from app.schemas.consumers import (
    ConsumerListArgs,
    ConsumerOut,
    ConsumerPage,
    SessionList,
)
from app.services.consumers import (
    consumer_query,
    consumer_sessions,
    consumer_views,
    end_consumer_sessions,
    end_session,
)
from app.services.paging import page


@blp.route("/consumers")
class Consumers(MethodView):
    @requires("secret", scope="consumers:read")
    @blp.arguments(ConsumerListArgs(), location="query")
    @blp.response(200, ConsumerPage)
    def get(self, args):
        """List consumers

        Filter by `email` (case-insensitive) or `phone` (E.164); keyset paging.
        """
        ctx = current_context()
        query = consumer_query(ctx.organization_id, ctx.mode, args.get("email"), args.get("phone"))
        session = db_session()
        result = page(session, query, Consumer.id, args["limit"], args.get("starting_after"))
        result["data"] = consumer_views(session, result["data"])
        return result


@blp.route("/consumers/<string:consumer_id>")
class ConsumerById(MethodView):
    @requires("secret", scope="consumers:read")
    @blp.response(200, ConsumerOut)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown consumer")
    def get(self, consumer_id):
        """Get a consumer

        Its email or phone, its external identities (provider, issuer, subject, latest claims)
        and when it was created.
        """
        session = db_session()
        return consumer_views(session, [tenant_get(session, Consumer, consumer_id, current_context())])[0]


@blp.route("/consumers/<string:consumer_id>/sessions")
class ConsumerSessions(MethodView):
    @requires("secret", scope="consumers:read")
    @blp.response(200, SessionList)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown consumer")
    def get(self, consumer_id):
        """List a consumer's sessions

        Newest last, revoked ones included (with when and why), so support can see every sign-in.
        """
        session = db_session()
        consumer = tenant_get(session, Consumer, consumer_id, current_context())
        return {"data": consumer_sessions(session, consumer)}

    @requires("secret", scope="sessions:write")
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown consumer")
    def delete(self, consumer_id):
        """Revoke all of a consumer's sessions

        Every refresh token of the consumer fails and its access tokens are refused from now on.
        """
        ctx = current_context()
        with transaction() as session:
            end_consumer_sessions(session, events(), ctx, tenant_get(session, Consumer, consumer_id, ctx), now())


@blp.route("/sessions/<string:session_id>")
class SessionById(MethodView):
    @requires("secret", scope="sessions:write")
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown session")
    def delete(self, session_id):
        """Revoke a session

        Its refresh token fails and its access token is refused from now on.
        """
        ctx = current_context()
        with transaction() as session:
            end_session(session, events(), ctx, tenant_get(session, AuthSession, session_id, ctx), now())
