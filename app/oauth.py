"""Standard endpoints for merchants' servers: RFC 7662 introspection and RFC 7009 revocation,
on Authlib's endpoint classes and an Authlib server built per app (in `create_app`).

The client is an organization × mode, authenticated by one of its secret keys: as
`Authorization: Bearer sk_…`, or HTTP Basic with the organization id and the secret key.
Errors here keep the RFC 6749 shape (`{"error": "invalid_client", …}`), as those RFCs require.
"""

from __future__ import annotations

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, current_app
from werkzeug.datastructures import Authorization

from app.models import AuthSession, Organization
from app.security.keys import constant_time_equal
from app.services.sessions import refresh_hash, revoke_sessions
from app.tokens.service import ACCESS, REFRESH, TokenError

CLIENT_AUTH_METHODS = ["secret_key_bearer", "client_secret_basic"]


class MerchantClient:
    """An organization; `mode` is learnt from the secret key that authenticated it."""

    def __init__(self, organization_id: str, mode: str | None = None):
        self.client_id = organization_id
        self.mode = mode

    def check_client_secret(self, client_secret: str) -> bool:
        ctx = _resolve_secret_key(client_secret)
        if ctx is None or not constant_time_equal(ctx.organization_id, self.client_id):
            return False
        self.mode = ctx.mode
        return True

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in CLIENT_AUTH_METHODS


class UsherToken:
    def __init__(self, claims: dict, session: AuthSession | None, string: str):
        self.claims, self.session, self.string = claims, session, string

    def is_expired(self) -> bool:
        return False  # verification already refused expired tokens

    def is_revoked(self) -> bool:
        if self.session is None or self.session.revoked_at is not None:
            return True
        if self.claims["tokenType"] == REFRESH:  # a rotated refresh token is used up
            current = refresh_hash(current_app.extensions["usher"].settings.app_secret, self.claims["jti"])
            return not constant_time_equal(current, self.session.refresh_hash)
        return False

    def check_client(self, client: MerchantClient) -> bool:
        return self.claims["organizationId"] == client.client_id and self.claims["mode"] == client.mode


TOKEN_TYPE_NAMES = {ACCESS: "access_token", REFRESH: "refresh_token"}  # RFC 7662/7009 token type hints


def _check_params(request) -> None:
    """`token` is required; an unknown `token_type_hint` is ignored (RFC 7662 §2.1, RFC 7009 §2.1)."""
    if "token" not in request.form:
        raise InvalidRequestError()


def _query_token(token_string: str, token_type_hint: str | None) -> UsherToken | None:
    usher = current_app.extensions["usher"]
    order = [REFRESH, ACCESS] if token_type_hint == TOKEN_TYPE_NAMES[REFRESH] else [ACCESS, REFRESH]
    for token_type in order:
        try:
            claims = usher.auth.tokens.verify(token_string, token_type, None, None)
        except TokenError:
            continue
        return UsherToken(claims, usher.session().get(AuthSession, claims["sessionId"]), token_string)
    return None


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def check_params(self, request, client):
        _check_params(request)

    def query_token(self, token_string, token_type_hint):
        return _query_token(token_string, token_type_hint)

    def check_permission(self, token, client, request):
        return token.check_client(client)

    def introspect_token(self, token):
        """The claims (an access token's include `aud`), and which kind of token it is."""
        return {"active": True, **token.claims, "token_type": TOKEN_TYPE_NAMES[token.claims["tokenType"]],
                "client_id": token.claims["organizationId"]}


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def check_params(self, request, client):
        _check_params(request)

    def query_token(self, token_string, token_type_hint):
        return _query_token(token_string, token_type_hint)

    def authenticate_token(self, request, client):
        """Another tenant's token is treated like an unknown one: 200, nothing revoked (RFC 7009 §2.2)."""
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        return token if token is not None and token.check_client(client) else None

    def revoke_token(self, token, request):
        usher = current_app.extensions["usher"]
        with usher.db.transaction(usher.session()) as session:
            revoke_sessions(session.connection(), "oauth_revoke", usher.clock(),
                            AuthSession.id == token.claims["sessionId"])


def _query_client(client_id: str) -> MerchantClient | None:
    if current_app.extensions["usher"].session().get(Organization, client_id) is None:
        return None
    return MerchantClient(client_id)


def _resolve_secret_key(value: str):
    usher = current_app.extensions["usher"]
    return usher.callers.resolve_key(usher.reader(), value, "secret")


def _authenticate_secret_key_bearer(query_client, request):
    """`Authorization: Bearer sk_…`, as every other secret-key endpoint of Usher (parsed by
    Werkzeug, as there)."""
    auth = Authorization.from_header(request.headers.get("Authorization"))
    if auth is None or auth.type != "bearer" or not auth.token or not auth.token.startswith("sk_"):
        return None
    ctx = _resolve_secret_key(auth.token.strip())
    return MerchantClient(ctx.organization_id, ctx.mode) if ctx else None


def build_oauth_server(app: Flask) -> AuthorizationServer:
    server = AuthorizationServer(app, query_client=_query_client, save_token=lambda token, request: None)
    server.register_client_auth_method("secret_key_bearer", _authenticate_secret_key_bearer)
    server.register_endpoint(Introspection)
    server.register_endpoint(Revocation)
    return server

