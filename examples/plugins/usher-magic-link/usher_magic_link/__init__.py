"""The `magic_link` grant: a one-time sign-in link sent by email.

`POST /api/v1/auth/magic-link/request` {email, redirectUrl} emails `<redirectUrl>#usher_magic=<token>`
(the test outbox in test mode); `POST /api/v1/auth/magic-link/verify` {token} answers a session
(`session.type` = `magic_link`), upgrading a guest whose access token comes along. A token works
once, for 15 minutes. Built on `app.plugins` only.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from marshmallow import fields, validate
from sqlalchemy import Column, ForeignKey, Index, MetaData, String, Table

from app import plugins

LIFETIME = timedelta(minutes=15)
INVALID, EXPIRED = "magic_link_invalid", "magic_link_expired"

metadata = MetaData()
#: Keyed hashes of the links' tokens (never the tokens), created by this package's Alembic branch.
magic_link_tokens = Table(
    "magic_link_tokens", metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("organization_id", String(40), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
    Column("mode", String(4), nullable=False),
    Column("email", String(320), nullable=False),
    Column("created_at", plugins.UTCDateTime(), nullable=False),
    Column("expires_at", plugins.UTCDateTime(), nullable=False),
    Column("consumed_at", plugins.UTCDateTime(), nullable=True),
    Index("ix_magic_link_tokens_expires_at", "expires_at"),
)
TOKENS = plugins.SingleUseCodes(magic_link_tokens, "magic_link", LIFETIME, prefix="ml_")


class RequestIn(plugins.Schema):
    email = fields.String(required=True, validate=validate.Length(1, 320), metadata={"example": "ann@example.com"})
    redirect_url = fields.String(data_key="redirectUrl", required=True, validate=validate.Length(1, 2048),
                                 metadata={"description": "Where the link leads: an origin in the mode's "
                                                          "`allowedOrigins`, without a fragment.",
                                           "example": "https://shop.example.com/signed-in"})


class RequestOut(plugins.Schema):
    sent = fields.Boolean(required=True)
    expires_at = plugins.Instant(data_key="expiresAt", required=True)


class VerifyIn(plugins.Schema):
    token = fields.String(required=True, validate=validate.Length(1, 200), metadata={"example": "ml_…"})


class MagicLinkGrant(plugins.Grant):
    GRANT_TYPE = "magic_link"
    SESSION_TYPE = "magic_link"
    UPGRADES_GUEST = True

    def validate_token_request(self) -> None:
        """Nothing beyond the schema: the per-address limit is applied by the view."""

    def create_token_response(self) -> tuple[int, dict]:
        with plugins.write() as connection:  # the token is spent only if the session is made
            row = TOKENS.consume(connection, self.request.data["token"], invalid=INVALID, expired=EXPIRED)
            consumer_id = plugins.find_or_create_consumer(connection, email=row.email)
            finish = plugins.sign_in(self, connection, consumer_id)
        return 200, finish()


class MagicLinkRequest(plugins.GrantView):
    grant = MagicLinkGrant
    rule = "/auth/magic-link/request"

    @plugins.doc.doc(operationId="requestMagicLink")
    @plugins.requires("publishable")
    @plugins.doc.arguments(RequestIn(), example={"email": "ann@example.com",
                                                 "redirectUrl": "https://shop.example.com/signed-in"})
    @plugins.doc.response(202, RequestOut)
    @plugins.doc.alt_response(400, schema=plugins.ErrorSchema, description="`invalid_email` or `validation_error` "
                                                                           "(`redirectUrl` not an allowed origin)")
    @plugins.doc.alt_response(429, schema=plugins.ErrorSchema, description="Too many links for this address or email")
    @plugins.doc.alt_response(503, schema=plugins.ErrorSchema, description="The email could not be sent")
    def post(self, data):
        """Email a sign-in link

        The link is `redirectUrl#usher_magic=<token>`; the token works once, for 15 minutes. The
        answer is the same whether or not the address is known. In test mode the email goes to
        the test outbox.
        """
        email = plugins.normalize_email(data["email"])
        url = data["redirect_url"]
        if not plugins.origin_allowed_for(url) or urlsplit(url).fragment or "#" in url:
            raise plugins.ApiError("validation_error", details={
                "redirectUrl": ["Must be an http(s) URL without a fragment, on an origin in allowedOrigins."]})
        plugins.limit("magic_link_request_ip", "20 per hour", plugins.client_key())
        plugins.limit("magic_link_request_email", f"{plugins.setting('magicLinkRequestsPerHour')} per hour", email)
        with plugins.write() as connection:
            token, expires_at = TOKENS.issue(connection, email=email)
        name = plugins.current_context().organization.name
        plugins.send_message("email", email, f"Sign in to {name}",
                             f"Sign in to {name} with this link (it works once, for 15 minutes):\n"
                             f"{url}#usher_magic={token}\n")
        return {"sent": True, "expires_at": expires_at}


class MagicLinkVerify(plugins.GrantView):
    grant = MagicLinkGrant
    rule = "/auth/magic-link/verify"

    @plugins.doc.doc(security=plugins.OPTIONAL_GUEST_TOKEN, operationId="verifyMagicLink")
    @plugins.requires("publishable")
    @plugins.doc.arguments(VerifyIn(), example={"token": "ml_…"})
    @plugins.doc.response(200, plugins.SessionTokens)
    @plugins.doc.alt_response(401, schema=plugins.ErrorSchema, description="`magic_link_invalid` or "
                                                                           "`magic_link_expired`")
    @plugins.doc.alt_response(429, schema=plugins.ErrorSchema, description="Too many tries from this address")
    def post(self, data):
        """Sign in with a link's token

        Single use. With a guest's access token in `Authorization`, the guest is upgraded: its
        queue places move to the consumer and its session ends.
        """
        plugins.limit("magic_link_verify_ip", "60 per hour", plugins.client_key())
        return self.token_response(data)


def purge(ctx: plugins.PurgeContext) -> dict[str, int]:
    """`flask purge`: tokens expired more than a day ago."""
    return {"tokens": TOKENS.purge(ctx)}


plugin = plugins.GrantPlugin(
    grant=MagicLinkGrant,
    views=(MagicLinkRequest, MagicLinkVerify),
    errors={
        INVALID: plugins.ErrorCode(401, "This sign-in link is not valid.", "Unknown, used or foreign magic link."),
        EXPIRED: plugins.ErrorCode(401, "This sign-in link has expired. Please request a new one.",
                                   "The magic link is older than 15 minutes."),
    },
    migrations=Path(__file__).resolve().parent / "migrations",
    purge=purge,
    settings={"magicLinkRequestsPerHour": fields.Integer(
        load_default=5, validate=validate.Range(1, 100),
        metadata={"description": "Sign-in links per email address per hour (1–100)", "example": 5})},
)
