"""Webhook endpoints of the caller's organization and mode (Events out)."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from sqlalchemy import select

from app.api.admin import blp
from app.api.helpers import app_secret, db_session, now, tenant_get, transaction
from app.api.security import current_context, requires
from app.errors import ApiError
from app.models import WebhookDelivery, WebhookEndpoint
from app.openapi import ErrorSchema
from app.schemas.common import PageArgs
from app.schemas.webhooks import (
    DeliveryArgs,
    DeliveryList,
    SecretRotation,
    WebhookEndpointCreated,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEndpointPage,
)
from app.services import audit
from app.services.events import events_of
from app.services.paging import page
from app.services.webhooks import (
    UrlRefused,
    create_endpoint,
    delete_endpoint,
    resolve,
    rotate_secret,
)

NO_STORE = {"Cache-Control": "no-store"}


def _shown_once(endpoint: WebhookEndpoint, secret: str):
    return {"id": endpoint.id, "url": endpoint.url, "events": endpoint.events, "description": endpoint.description,
            "created_at": endpoint.created_at, "secret": secret}, 201, NO_STORE


@blp.route("/webhook-endpoints")
class WebhookEndpoints(MethodView):
    @requires("secret", scope="webhooks:write")
    @blp.arguments(PageArgs(), location="query")
    @blp.response(200, WebhookEndpointPage)
    def get(self, args):
        """List webhook endpoints (without secrets)

        The endpoints of the caller's organization and mode, oldest first; keyset paging.
        """
        ctx = current_context()
        query = select(WebhookEndpoint).where(WebhookEndpoint.organization_id == ctx.organization_id,
                                              WebhookEndpoint.mode == ctx.mode)
        return page(db_session(), query, WebhookEndpoint.id, args["limit"], args.get("starting_after"))

    @requires("secret", scope="webhooks:write")
    @blp.arguments(WebhookEndpointIn(), example={"url": "https://shop.example.com/usher/webhooks",
                                                 "events": ["session.created", "refresh_token.reused"]})
    @blp.response(201, WebhookEndpointCreated, headers={"Cache-Control": {"schema": {"type": "string"},
                                                                          "description": "`no-store`"}})
    def post(self, data):
        """Create a webhook endpoint

        The answer carries the signing `secret` this once (`Cache-Control: no-store`). In live
        mode the URL must be `https` and resolve to public addresses only (checked now and at
        every delivery); test mode also allows `http` and loopback. Redirects are never followed.
        """
        ctx = current_context()
        try:
            resolve(data["url"], ctx.mode)
        except UrlRefused as exc:
            raise ApiError("validation_error", details={"url": [str(exc)]}) from None
        with transaction() as session:
            endpoint, secret = create_endpoint(session, app_secret(), ctx.organization_id, ctx.mode, data["url"],
                                               data["events"], data.get("description"), now())
            audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "webhook_endpoint.created",
                         ("webhook_endpoint", endpoint.id), {"url": endpoint.url, "events": endpoint.events}, now())
        events_of(current_app).forget(ctx.organization_id, ctx.mode)
        return _shown_once(endpoint, secret)


@blp.route("/webhook-endpoints/<string:endpoint_id>")
class WebhookEndpointById(MethodView):
    @requires("secret", scope="webhooks:write")
    @blp.response(200, WebhookEndpointOut)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown endpoint")
    def get(self, endpoint_id):
        """Get a webhook endpoint (without its secret)

        Another organization's or mode's endpoint id answers 404, like an unknown one.
        """
        return tenant_get(db_session(), WebhookEndpoint, endpoint_id, current_context())

    @requires("secret", scope="webhooks:write")
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown endpoint")
    def delete(self, endpoint_id):
        """Delete a webhook endpoint

        Nothing more is sent to it, including retries still pending; its deliveries go with it.
        """
        ctx = current_context()
        with transaction() as session:
            endpoint = tenant_get(session, WebhookEndpoint, endpoint_id, ctx)
            audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "webhook_endpoint.deleted",
                         ("webhook_endpoint", endpoint.id), {"url": endpoint.url}, now())
            delete_endpoint(session, endpoint)
        events_of(current_app).forget(ctx.organization_id, ctx.mode)


@blp.route("/webhook-endpoints/<string:endpoint_id>/rotate-secret")
class RotateWebhookSecret(MethodView):
    @requires("secret", scope="webhooks:write")
    @blp.arguments(SecretRotation(), example={"expiresIn": 86400})
    @blp.response(201, WebhookEndpointCreated)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown endpoint")
    def post(self, data, endpoint_id):
        """Rotate an endpoint's signing secret

        The new `secret` is shown this once. For `expiresIn` seconds deliveries carry two
        signatures (`webhook-signature: v1,<new> v1,<old>`), so the receiver can switch at leisure.
        """
        ctx = current_context()
        with transaction() as session:
            endpoint = tenant_get(session, WebhookEndpoint, endpoint_id, ctx)
            secret = rotate_secret(endpoint, app_secret(), data["expires_in"], now())
            audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx),
                         "webhook_endpoint.secret_rotated", ("webhook_endpoint", endpoint.id),
                         {"expiresIn": data["expires_in"]}, now())
        return _shown_once(endpoint, secret)


@blp.route("/webhook-endpoints/<string:endpoint_id>/deliveries")
class WebhookDeliveries(MethodView):
    @requires("secret", scope="webhooks:write")
    @blp.arguments(DeliveryArgs(), location="query")
    @blp.response(200, DeliveryList)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown endpoint")
    def get(self, args, endpoint_id):
        """List an endpoint's deliveries, newest first

        Each attempt is counted (`attempts`, `lastResponseStatus`); a failing delivery is retried
        after 5 s, 5 min, 30 min, 2 h, 5 h and 10 h (`nextAttemptAt`), then marked `failed`.
        """
        session = db_session()
        endpoint = tenant_get(session, WebhookEndpoint, endpoint_id, current_context())
        rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
                               .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.event_id.desc())
                               .limit(args["limit"]))
        return {"data": [{"id": r.event_id, "event_type": r.event_type, "status": r.status, "attempts": r.attempts,
                          "last_response_status": r.last_response_status, "next_attempt_at": r.next_attempt_at}
                         for r in rows]}
