from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from app.api.consumer import blp
from app.api.grants import GrantView
from app.api.ratelimit import client_key
from app.api.security import current_context, requires
from app.grants.external import ExternalExchangeGrant, create_exchange_code
from app.openapi import OPTIONAL_GUEST_TOKEN, ErrorSchema
from app.registry import GrantPlugin
from app.schemas.auth import SessionTokens
from app.schemas.external import AuthorizeIn, AuthorizeOut, ExchangeIn


@blp.route("/auth/external/authorize")
class ExternalAuthorize(MethodView):
    @requires("secret", scope="external:write")
    @blp.arguments(AuthorizeIn(), example={"provider": "your-platform", "issuer": "https://your-domain.com",
                                         "subject": "user_123456",
                                         "claims": {"email": "john@example.com", "name": "John Doe"}})
    @blp.response(201, AuthorizeOut)
    @blp.alt_response(400, schema=ErrorSchema, description="Validation error, with `details` per field")
    def post(self, data):
        """Create an exchange code (server-side)

        Your server vouches for a shopper it already knows. The code works once, for 60 seconds,
        with a publishable key of the same organization and mode. With `codeChallenge` (S256),
        the exchange must present the matching `codeVerifier`.
        """
        return create_exchange_code(current_app.extensions["usher"].auth, current_context(), data)


class ExternalExchange(GrantView):
    grant = ExternalExchangeGrant
    rule = "/auth/external/exchange"

    @blp.doc(security=OPTIONAL_GUEST_TOKEN)
    @requires("publishable")
    @blp.arguments(ExchangeIn(), example={"exchangeCode": "exc_…"})
    @blp.response(200, SessionTokens)
    @blp.alt_response(401, schema=ErrorSchema, description="`exchange_code_invalid` or `exchange_code_expired`")
    def post(self, data):
        """Exchange a code for a session (client-side)

        The same (provider, issuer, subject) is always the same consumer. Presenting a used code
        again ends the session it made. With a guest's access token in `Authorization`, the guest
        is upgraded as with OTP.
        """
        ctx, usher = current_context(), current_app.extensions["usher"]
        usher.limits.hit("exchange_ip", usher.settings.exchange_rate_limit, ctx.organization_id, ctx.mode,
                         client_key())
        return self.token_response(data)


# A `usher.grants` entry point (app.registry); `authorize` is a secret-key route of its own, always there.
EXTERNAL = GrantPlugin(grant=ExternalExchangeGrant, views=(ExternalExchange,))
