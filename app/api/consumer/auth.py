from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from app.api.consumer import blp
from app.api.helpers import transaction
from app.grants.base import TokenRequest
from app.models import AuthSession
from app.openapi import ErrorSchema
from app.ratelimit import client_ip
from app.schemas.auth import LogoutIn, RefreshIn, SessionTokens, TokenPair
from app.security.context import current_context, requires
from app.services.sessions import revoke


def grant_response(grant_type: str, data: dict | None = None) -> tuple[dict, int]:
    server = current_app.extensions["usher"].auth
    status, body = server.create_token_response(
        grant_type, TokenRequest(ctx=current_context(), data=data or {}))
    return body, status


@blp.route("/auth/guest")
class Guest(MethodView):
    @requires("publishable")
    @blp.response(201, SessionTokens)
    @blp.alt_response(429, schema=ErrorSchema, description="Too many guest sessions from this client address")
    def post(self):
        """Start a guest session

        An anonymous consumer (`guest_…`) with an access and a refresh token. Limited per
        client address (60 per minute by default).
        """
        ctx = current_context()
        current_app.extensions["usher"].limits.hit("guest_per_ip", current_app.config["GUEST_RATE_LIMIT"],
                                                   ctx.organization_id, client_ip(), fail_closed=False)
        return grant_response("guest")


@blp.route("/auth/refresh")
class Refresh(MethodView):
    @requires("publishable")
    @blp.arguments(RefreshIn())
    @blp.response(200, TokenPair)
    @blp.alt_response(401, schema=ErrorSchema, description="`refresh_token_invalid`, `refresh_token_expired` "
                                                           "or `refresh_token_reused` (the session is revoked)")
    def post(self, data):
        """Rotate a refresh token

        Each refresh token works once. Concurrent refreshes of one token within the grace window
        (10 s by default) all receive the same new pair; presenting a rotated token after the
        window revokes the whole session.
        """
        return grant_response("refresh_token", data)


@blp.route("/auth/logout")
class Logout(MethodView):
    @requires("token")
    @blp.arguments(LogoutIn(), example={"scope": "local"})
    @blp.response(204)
    def post(self, data):
        """End sessions

        `local` (default) ends this session, `others` the consumer's other sessions, `global` all
        of them. Their refresh tokens fail and their access tokens are refused everywhere.
        """
        ctx = current_context()
        criteria = [AuthSession.consumer_id == ctx.consumer_id, AuthSession.organization_id == ctx.organization_id]
        if data["scope"] == "local":
            criteria.append(AuthSession.id == ctx.session_id)
        elif data["scope"] == "others":
            criteria.append(AuthSession.id != ctx.session_id)
        with transaction() as session:
            revoke(session, f"logout_{data['scope']}", *criteria)
