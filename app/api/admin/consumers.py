from __future__ import annotations

from flask.views import MethodView
from sqlalchemy import select

from app.api.admin import blp
from app.api.helpers import db_session, now, tenant_get, transaction
from app.api.security import current_context, requires
from app.models import AuthSession, Consumer, ExternalIdentity
from app.openapi import ErrorSchema
from app.schemas.consumers import (
    ConsumerListArgs,
    ConsumerOut,
    ConsumerPage,
    SessionList,
)
from app.services import audit
from app.services.paging import page
from app.services.sessions import revoke_sessions


def consumer_views(session, consumers: list[Consumer]) -> list[dict]:
    """Consumers with their external identities (one query for the whole page)."""
    identities: dict[str, list] = {c.id: [] for c in consumers}
    if consumers:
        for identity in session.scalars(select(ExternalIdentity).where(
                ExternalIdentity.consumer_id.in_(list(identities))).order_by(ExternalIdentity.id)):
            identities[identity.consumer_id].append(identity)
    return [{"id": c.id, "email": c.email, "phone": c.phone, "external_identities": identities[c.id],
             "merged_into": c.merged_into, "created_at": c.created_at} for c in consumers]


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
        query = select(Consumer).where(Consumer.organization_id == ctx.organization_id, Consumer.mode == ctx.mode)
        if args.get("email"):
            query = query.where(Consumer.email == args["email"].strip().lower())
        if args.get("phone"):
            query = query.where(Consumer.phone == args["phone"].strip())
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
        rows = session.scalars(select(AuthSession).where(AuthSession.consumer_id == consumer.id)
                               .order_by(AuthSession.id)).all()
        return {"data": rows}

    @requires("secret", scope="sessions:write")
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown consumer")
    def delete(self, consumer_id):
        """Revoke all of a consumer's sessions

        Every refresh token of the consumer fails and its access tokens are refused from now on.
        """
        ctx = current_context()
        with transaction() as session:
            consumer = tenant_get(session, Consumer, consumer_id, ctx)
            count = revoke_sessions(session.connection(), "admin", now(), AuthSession.consumer_id == consumer.id)
            audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "consumer.sessions_revoked",
                         ("consumer", consumer.id), {"reason": "admin", "count": count}, now())


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
            row = tenant_get(session, AuthSession, session_id, ctx)
            if revoke_sessions(session.connection(), "admin", now(), AuthSession.id == row.id):
                audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "session.revoked",
                             ("session", row.id), {"reason": "admin", "consumerId": row.consumer_id}, now())
