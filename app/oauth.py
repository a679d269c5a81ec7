"""Standard endpoints, on an Authlib `AuthorizationServer` built per app (in `create_app`):

- the RFC 6749 token endpoint for public clients (`client_id` = a publishable key, auth method
  `none`), with the `refresh_token` grant and RFC 8693 token exchange for exchange codes. Each
  is an Authlib grant that hands the request to the *same* Usher grant as the JSON endpoints
  (`app/grants/refresh.py`, `app/grants/external.py`): one implementation, two dialects;
- RFC 7662 introspection and RFC 7009 revocation, whose client is an organization × mode
  authenticated by one of its secret keys, or a restricted key with scope `introspect`: as
  `Authorization: Bearer sk_…`/`rk_…`, or HTTP Basic with the organization id and the key. A
  restricted key without the scope is answered 403 `insufficient_scope` (RFC 6750 §3.1's code,
  with Usher's `details.required`).

Errors here keep the RFC 6749 shape (`{"error": "invalid_grant", …}`), as those RFCs require.
"""

from __future__ import annotations

import jwt
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
)
from authlib.oauth2.rfc6749.grants import BaseGrant as OAuthGrant
from authlib.oauth2.rfc6749.grants import TokenEndpointMixin
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, current_app
from flask import request as flask_request
from marshmallow import ValidationError
from werkzeug.datastructures import Authorization

from app.cors import origin_allowed
from app.errors import ApiError
from app.grants.base import TokenRequest
from app.grants.external import ExternalExchangeGrant
from app.grants.refresh import RefreshTokenGrant
from app.models import AuthSession, Organization
from app.ratelimit import client_ip, client_key
from app.schemas.auth import RefreshIn
from app.schemas.external import ExchangeIn
from app.security.callers import RequestContext
from app.security.credentials import Credentials
from app.security.keys import constant_time_equal
from app.security.scopes import has_scope
from app.services import audit
from app.services.sessions import refresh_hash, revoke_sessions
from app.tokens.service import ACCESS, REFRESH, TokenError

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
EXCHANGE_CODE_TOKEN_TYPE = "urn:usher:params:oauth:token-type:exchange-code"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

CLIENT_AUTH_METHODS = ["secret_key_bearer", "client_secret_basic"]


class MerchantClient:
    """An organization; `mode` is learnt from the secret key that authenticated it."""

    def __init__(self, organization_id: str, mode: str | None = None, key_id: str | None = None):
        self.client_id = organization_id
        self.mode = mode
        self.key_id = key_id

    def check_client_secret(self, client_secret: str) -> bool:
        ctx = _resolve_secret_key(client_secret)
        if ctx is None or not constant_time_equal(ctx.organization_id, self.client_id):
            return False
        self.mode, self.key_id = ctx.mode, ctx.key_id
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
            settings = current_app.extensions["usher"].settings
            return not any(constant_time_equal(refresh_hash(secret, self.claims["jti"]), self.session.refresh_hash)
                           for secret in settings.app_secrets)
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
        client, now = request.client, usher.clock()
        with usher.db.transaction(usher.session()) as session:
            if revoke_sessions(session.connection(), usher.events, "oauth_revoke", now,
                               AuthSession.id == token.claims["sessionId"]):
                audit.record(session, client.client_id, client.mode, audit.Actor("key", client.key_id),
                             "session.revoked", ("session", token.claims["sessionId"]),
                             {"reason": "oauth_revoke", "consumerId": token.claims["consumerId"]}, now)


class PublicClient:
    """A shop's browser or app at the token endpoint: `client_id` is its publishable key, which
    resolves to the organization and mode it acts in (auth method `none`: it has no secret)."""

    def __init__(self, publishable_key: str, ctx: RequestContext):
        self.client_id = publishable_key
        self.ctx = ctx

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none" and endpoint == "token"

    def check_grant_type(self, grant_type: str) -> bool:
        return True  # the server offers only the grants this app enables


def _query_client(client_id: str) -> MerchantClient | PublicClient | None:
    if not client_id.isprintable():  # form and Basic values may carry what no id holds (NUL, …)
        return None
    usher = current_app.extensions["usher"]
    if client_id.startswith("pk_"):
        ctx = usher.callers.resolve_key(usher.reader, client_id, "publishable")
        return PublicClient(client_id, ctx) if ctx is not None else None
    if usher.session().get(Organization, client_id) is None:
        return None
    return MerchantClient(client_id)


class TemporarilyUnavailableError(OAuth2Error):
    error = "temporarily_unavailable"
    status_code = 503


class RateLimitedError(OAuth2Error):
    """The JSON endpoints' `rate_limited`, in the RFC 6749 error shape (no registered code says it)."""

    error = "rate_limited"
    status_code = 429


class InvalidTargetError(OAuth2Error):
    error = "invalid_target"  # RFC 8693 §2.2.2


def _oauth_error(exc: ApiError) -> OAuth2Error:
    """A catalogued error of the shared grant, as RFC 6749 §5.2 says it."""
    if exc.status == 401 and exc.error != "Authentication required":  # a failed grant
        return InvalidGrantError(description=exc.message)
    if exc.status == 401:
        return InvalidClientError(description="The publishable key is not valid.")
    retry = exc.headers.get("Retry-After")
    if exc.status == 429:
        error: OAuth2Error = RateLimitedError(description=exc.message)
    elif exc.status == 503:
        error = TemporarilyUnavailableError(description=exc.message)
    else:
        return InvalidRequestError(description=exc.message)
    if retry:
        error.get_headers = lambda: [*OAuth2Error.get_headers(error), ("Retry-After", retry)]  # type: ignore[method-assign]
    return error


class _SharedGrant(OAuthGrant, TokenEndpointMixin):
    """An Authlib token grant that runs one of Usher's own grants: the same validation, limits,
    rotation, replay and binding rules as its JSON endpoint, answered in RFC 6749 §5.1/§5.2."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]  # noqa: RUF012 (Authlib declares it per instance)
    USHER_GRANT: str
    SCHEMA: type

    def form_data(self, form) -> dict:
        raise NotImplementedError

    def validate_token_request(self):
        client = self.authenticate_token_endpoint_client()
        if not isinstance(client, PublicClient):
            raise InvalidClientError(description="client_id must be a publishable key.")
        origin = flask_request.headers.get("Origin")
        if origin is not None and not origin_allowed(origin, client.ctx.organization.allowed_origins or []):
            # As the JSON grant routes (`check_origin`): a simple form POST needs no preflight,
            # so the refusal must come before any work (nothing rotated, nothing consumed).
            raise InvalidClientError(status_code=401,
                                     description="This origin is not in the mode's allowedOrigins.")
        self.request.client = client
        try:
            data = self.SCHEMA().load(self.form_data(self.request.form))
        except ValidationError as exc:
            fields = ", ".join(sorted(exc.messages)) if isinstance(exc.messages, dict) else "the request"
            raise InvalidRequestError(description=f"Invalid parameters: {fields}.") from None
        # No bearer credentials: a guest is upgraded only through the JSON endpoints.
        self.token_request = TokenRequest(ctx=client.ctx, data=data, client_ip=client_ip(),
                                          credentials=Credentials(publishable_key=client.client_id))

    def apply_limits(self, usher) -> None:
        """The limits of the grant's JSON endpoint, with the same keys (one budget for both):
        this is the view layer of /oauth/token, where limits are applied (see `app.ratelimit`)."""

    def create_token_response(self):
        usher = current_app.extensions["usher"]
        try:
            self.apply_limits(usher)
            _status, body = usher.auth.create_token_response(self.USHER_GRANT, self.token_request)
        except ApiError as exc:
            raise _oauth_error(exc) from None
        access = body["accessToken"]
        expires = jwt.decode(access, options={"verify_signature": False})["exp"]  # signed just now, by us
        token = {"access_token": access, "token_type": "Bearer",
                 "expires_in": max(0, expires - int(usher.clock().timestamp())),
                 "refresh_token": body["refreshToken"], **self.extra_fields()}
        return 200, token, self.TOKEN_RESPONSE_HEADER

    def extra_fields(self) -> dict:
        return {}


class OAuthRefreshGrant(_SharedGrant):
    """`grant_type=refresh_token`: `RefreshTokenGrant`, as `POST /api/v1/auth/refresh`."""

    GRANT_TYPE = "refresh_token"
    USHER_GRANT = RefreshTokenGrant.GRANT_TYPE
    SCHEMA = RefreshIn

    def form_data(self, form) -> dict:
        if not form.get("refresh_token"):
            raise InvalidRequestError(description="Missing 'refresh_token' parameter.")
        if form.get("scope"):
            raise InvalidRequestError(description="Usher tokens carry no scope.")
        return {"refreshToken": form["refresh_token"]}


class OAuthTokenExchangeGrant(_SharedGrant):
    """RFC 8693 for exchange codes: `ExternalExchangeGrant`, as `POST /api/v1/auth/external/exchange`."""

    GRANT_TYPE = TOKEN_EXCHANGE
    USHER_GRANT = ExternalExchangeGrant.GRANT_TYPE
    SCHEMA = ExchangeIn

    def form_data(self, form) -> dict:
        if not form.get("subject_token"):
            raise InvalidRequestError(description="Missing 'subject_token' parameter.")
        if form.get("subject_token_type") != EXCHANGE_CODE_TOKEN_TYPE:
            raise InvalidRequestError(description=f"subject_token_type must be {EXCHANGE_CODE_TOKEN_TYPE}.")
        if form.get("requested_token_type") not in (None, "", ACCESS_TOKEN_TYPE):
            raise InvalidRequestError(description=f"requested_token_type can only be {ACCESS_TOKEN_TYPE}.")
        if form.get("actor_token"):
            raise InvalidRequestError(description="Delegation (actor_token) is not supported.")
        if form.get("audience") or form.get("resource") or form.get("scope"):
            raise InvalidTargetError(description="Usher issues tokens for the client's organization and mode only.")
        data = {"exchangeCode": form["subject_token"]}
        if form.get("code_verifier"):
            data["codeVerifier"] = form["code_verifier"]
        return data

    def apply_limits(self, usher) -> None:
        ctx = self.token_request.ctx  # as POST /api/v1/auth/external/exchange
        usher.limits.hit("exchange_ip", usher.settings.exchange_rate_limit, ctx.organization_id, ctx.mode,
                         client_key())

    def extra_fields(self) -> dict:
        return {"issued_token_type": ACCESS_TOKEN_TYPE}


def _resolve_secret_key(value: str):
    """The caller of a secret key, or of a restricted key that holds `introspect` (403 if it
    does not); None for anything else."""
    usher = current_app.extensions["usher"]
    key_type = "restricted" if value.startswith("rk_") else "secret"
    ctx = usher.callers.resolve_key(usher.reader, value, key_type)
    if ctx is not None and not has_scope(ctx, "introspect"):
        raise ApiError("insufficient_scope", details={"required": ["introspect"]})
    return ctx


def _authenticate_secret_key_bearer(query_client, request):
    """`Authorization: Bearer sk_…` (or `rk_…`), as every other secret-key endpoint of Usher
    (parsed by Werkzeug, as there)."""
    auth = Authorization.from_header(request.headers.get("Authorization"))
    if auth is None or auth.type != "bearer" or not auth.token or not auth.token.startswith(("sk_", "rk_")):
        return None
    ctx = _resolve_secret_key(auth.token.strip())
    return MerchantClient(ctx.organization_id, ctx.mode, ctx.key_id) if ctx else None


def build_oauth_server(app: Flask) -> AuthorizationServer:
    server = AuthorizationServer(app, query_client=_query_client, save_token=lambda token, request: None)
    server.register_client_auth_method("secret_key_bearer", _authenticate_secret_key_bearer)
    server.register_endpoint(Introspection)
    server.register_endpoint(Revocation)
    for grant in oauth_grants(app.extensions["usher"].auth):
        server.register_grant(grant)
    return server


def oauth_grants(auth) -> list[type[_SharedGrant]]:
    """The token endpoint's grants whose Usher grant this app enables."""
    return [grant for grant in (OAuthRefreshGrant, OAuthTokenExchangeGrant) if auth.enabled(grant.USHER_GRANT)]

