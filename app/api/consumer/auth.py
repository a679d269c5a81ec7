from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from app.api.consumer import blp
from app.api.consumer.challenge import CHALLENGE_HEADER, CHALLENGE_REFUSED, guard
from app.api.grants import GrantView
from app.api.helpers import events, now, transaction
from app.api.security import current_context, requires
from app.grants.guest import GuestGrant
from app.grants.refresh import RefreshTokenGrant
from app.models import AuthSession
from app.openapi import ErrorSchema
from app.ratelimit import client_key
from app.registry import GrantPlugin
from app.schemas.auth import LogoutIn, RefreshIn, SessionTokens, TokenPair
from app.services import audit
from app.services.sessions import revoke_sessions


class Guest(GrantView):
    grant = GuestGrant
    rule = "/auth/guest"

    @requires("publishable")
    @blp.doc(parameters=[CHALLENGE_HEADER])
    @blp.response(201, SessionTokens)
    @blp.alt_response(403, schema=ErrorSchema, description=CHALLENGE_REFUSED)
    @blp.alt_response(429, schema=ErrorSchema, description="Too many guest sessions from this client address")
    def post(self):
        """Start a guest session

        An anonymous consumer (`guest_…`) with an access and a refresh token. Limited per
        client address (60 per minute by default).
        """
        ctx, usher = current_context(), current_app.extensions["usher"]
        # Fails open: guests cost the merchant nothing, and a limit storage outage must not stop a drop.
        usher.limits.hit("guest_per_ip", usher.settings.guest_rate_limit, ctx.organization_id, ctx.mode, client_key(),
                         fail_closed=False)
        guard("guest")
        return self.token_response()


class Refresh(GrantView):
    grant = RefreshTokenGrant
    rule = "/auth/refresh"

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
        return self.token_response(data)


# Registered as `usher.grants` entry points (app.registry.BUILTINS), as a plugin's grants are.
GUEST = GrantPlugin(grant=GuestGrant, views=(Guest,))
REFRESH = GrantPlugin(grant=RefreshTokenGrant, views=(Refresh,))


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
        reason = f"logout_{data['scope']}"
        with transaction() as session:
            count = revoke_sessions(session.connection(), events(), reason, now(), *criteria)
            if count and data["scope"] == "local":
                audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "session.revoked",
                             ("session", ctx.session_id), {"reason": reason, "consumerId": ctx.consumer_id}, now())
            elif count:
                audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "consumer.sessions_revoked",
                             ("consumer", ctx.consumer_id), {"reason": reason, "count": count}, now())
