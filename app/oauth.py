"""Standard OAuth endpoints:

- the RFC 6749 token endpoint for public clients (`client_id` = a publishable key, auth method
  `none`), with the `refresh_token` grant and RFC 8693 token exchange for exchange codes: a thin
  adapter (`token_response`) that reads the form into the request of the *same* Usher grant as
  the JSON endpoints, run by the app's one grant registry (`AuthServer`), and answers in the
  RFC's shape: one implementation, two dialects, one set of limits (`apply_grant_limits`);
- on an Authlib `AuthorizationServer` built per app (in `create_app`), where its endpoint
  classes earn their place: RFC 7662 introspection and RFC 7009 revocation, whose client is an
  organization × mode authenticated by one of its secret keys, or a restricted key with scope `introspect`: as
  `Authorization: Bearer sk_…`/`rk_…`, or HTTP Basic with the organization id and the key. A
  restricted key without the scope is answered 403 `insufficient_scope` (RFC 6750 §3.1's code,
  with Usher's `details.required`).

Errors here keep the RFC 6749 shape (`{"error": "invalid_grant", …}`), as those RFCs require.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import jwt
from authlib.consts import default_json_headers
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.errors import (
    InsecureTransportError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    UnsupportedGrantTypeError,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, Response, current_app, json
from flask import request as flask_request
from marshmallow import Schema, ValidationError
from werkzeug.datastructures import Authorization, MultiDict

from app.api.grants import apply_grant_limits
from app.api.ratelimit import client_ip
from app.cors import origin_allowed
from app.errors import ApiError
from app.grants.base import AuthServer, TokenRequest
from app.grants.external import ExternalExchangeGrant
from app.grants.refresh import RefreshTokenGrant
from app.models import AuthSession, Organization
from app.schemas.auth import RefreshIn
from app.schemas.external import ExchangeIn
from app.security.callers import RequestContext
from app.security.credentials import Credentials
from app.security.keys import constant_time_equal
from app.security.scopes import has_scope
from app.services import audit
from app.services.sessions import refresh_hash, revoke_sessions
from app.tokens.service import ACCESS, REFRESH, TokenError

if TYPE_CHECKING:
    from app.state import Usher

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


class _RetryLater(OAuth2Error):
    """An error that says when to ask again (`Retry-After`, as the JSON endpoints' does)."""

    def __init__(self, description: str | None = None, retry_after: str | None = None):
        super().__init__(description=description)
        self.retry_after = retry_after

    def get_headers(self) -> list[tuple[str, str]]:
        headers = super().get_headers()
        return [*headers, ("Retry-After", self.retry_after)] if self.retry_after else headers


class TemporarilyUnavailableError(_RetryLater):
    error = "temporarily_unavailable"
    status_code = 503


class RateLimitedError(_RetryLater):
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
        return RateLimitedError(exc.message, retry)
    if exc.status == 503:
        return TemporarilyUnavailableError(exc.message, retry)
    return InvalidRequestError(description=exc.message)


@dataclass(frozen=True)
class FormGrant:
    """How `/oauth/token` speaks one of Usher's grants: the form's `grant_type`, the grant it
    runs from the app's one registry (`AuthServer`), how the form becomes that grant's request
    data (its JSON endpoint's field names, checked by the same schema), and what the RFC adds
    to its answer."""

    grant_type: str
    usher_grant: str
    schema: type[Schema]
    read: Callable[[MultiDict[str, str]], dict]
    extra: dict[str, str] = field(default_factory=dict)


def _refresh_form(form: MultiDict[str, str]) -> dict:
    if not form.get("refresh_token"):
        raise InvalidRequestError(description="Missing 'refresh_token' parameter.")
    if form.get("scope"):
        raise InvalidRequestError(description="Usher tokens carry no scope.")
    return {"refreshToken": form["refresh_token"]}


def _exchange_form(form: MultiDict[str, str]) -> dict:
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


#: `grant_type=refresh_token` is `POST /api/v1/auth/refresh`; RFC 8693 token exchange of an
#: exchange code is `POST /api/v1/auth/external/exchange`.
FORM_GRANTS = (
    FormGrant("refresh_token", RefreshTokenGrant.GRANT_TYPE, RefreshIn, _refresh_form),
    FormGrant(TOKEN_EXCHANGE, ExternalExchangeGrant.GRANT_TYPE, ExchangeIn, _exchange_form,
              {"issued_token_type": ACCESS_TOKEN_TYPE}),
)
_NONE_ONLY = "The client cannot authenticate with methods: ['none']"


def oauth_grants(auth: AuthServer) -> list[FormGrant]:
    """The token endpoint's grants whose Usher grant this app enables."""
    return [grant for grant in FORM_GRANTS if auth.enabled(grant.usher_grant)]


def _public_client(values: MultiDict[str, str]) -> PublicClient:
    """RFC 6749 §2.3 auth method `none`: `client_id` is a publishable key and no secret comes along."""
    client_id = values.get("client_id")
    if not client_id or values.get("client_secret"):
        raise InvalidClientError(description=_NONE_ONLY)
    client = _query_client(client_id)
    if client is None:
        raise InvalidClientError(description="The client does not exist on this server.")
    if not isinstance(client, PublicClient):  # an organization id: a confidential client, not here
        raise InvalidClientError(description=_NONE_ONLY)
    return client


def _rfc_response(status: int, body: dict, headers: list[tuple[str, str]]) -> Response:
    return Response(json.dumps(body), status=status, headers=headers)


def endpoint_response(endpoint: str) -> Response:
    """`POST /oauth/introspect` and `/oauth/revoke` on the app's Authlib server. Plain HTTP off
    loopback is answered 400 `insecure_transport` here: Authlib raises it outside its own error
    handling, which would make it a 500."""
    try:
        InsecureTransportError.check(flask_request.url)
    except InsecureTransportError as error:
        return _rfc_response(*error())
    return current_app.extensions["oauth"].create_endpoint_response(endpoint)


def token_response(usher: Usher) -> Response:
    """`POST /oauth/token`: the form read into the request of one of the app's grants, run by
    the one registry (`AuthServer.create_token_response`) with the same validation, limits,
    rotation, replay and binding rules as its JSON endpoint, answered in RFC 6749 §5.1/§5.2."""
    values, form = flask_request.values, flask_request.form
    try:
        InsecureTransportError.check(flask_request.url)  # OAuth over plain HTTP only on loopback: 400
        grant = next((g for g in oauth_grants(usher.auth) if g.grant_type == values.get("grant_type")), None)
        if grant is None:
            raise UnsupportedGrantTypeError(values.get("grant_type"))
        client = _public_client(values)
        origin = flask_request.headers.get("Origin")
        if origin is not None and not origin_allowed(origin, client.ctx.organization.allowed_origins or []):
            # As the JSON grant routes (`check_origin`): a simple form POST needs no preflight,
            # so the refusal must come before any work (nothing rotated, nothing consumed).
            raise InvalidClientError(status_code=401,
                                     description="This origin is not in the mode's allowedOrigins.")
        try:
            data = grant.schema().load(grant.read(form))
        except ValidationError as exc:
            fields = ", ".join(sorted(exc.messages)) if isinstance(exc.messages, dict) else "the request"
            raise InvalidRequestError(description=f"Invalid parameters: {fields}.") from None
        # No bearer credentials: a guest is upgraded only through the JSON endpoints.
        token_request = TokenRequest(ctx=client.ctx, data=data, client_ip=client_ip(),
                                     credentials=Credentials(publishable_key=client.client_id))
        try:
            apply_grant_limits(usher, grant.usher_grant, client.ctx)
            _status, body = usher.auth.create_token_response(grant.usher_grant, token_request)
        except ApiError as exc:
            raise _oauth_error(exc) from None
    except OAuth2Error as error:
        return _rfc_response(*error())
    access = body["accessToken"]
    expires = jwt.decode(access, options={"verify_signature": False})["exp"]  # signed just now, by us
    token = {"access_token": access, "token_type": "Bearer",
             "expires_in": max(0, expires - int(usher.clock().timestamp())),
             "refresh_token": body["refreshToken"], **grant.extra}
    return _rfc_response(200, token, default_json_headers[:])


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
    """Authlib's server for the RFC 7662 and RFC 7009 endpoints only: the token endpoint runs
    the app's own grant registry (`token_response`)."""
    server = AuthorizationServer(app, query_client=_query_client, save_token=lambda token, request: None)
    server.register_client_auth_method("secret_key_bearer", _authenticate_secret_key_bearer)
    server.register_endpoint(Introspection)
    server.register_endpoint(Revocation)
    return server
