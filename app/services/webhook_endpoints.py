"""What a caller does with its webhook endpoints, for the admin API and the dashboard alike.

Each change checks the rule, makes the change and writes its audit event (the caller's key as
actor) in one transaction; a change of who listens then makes this process forget its cached
listeners of the tenant (after the commit, so no request caches the old answer again). The
rules themselves (SSRF, secrets, rotation) are in `app.services.webhooks`.

A new signing secret is returned once. A caller that keeps it somewhere (the dashboard holds it
for its next page) passes `reveal`, run in the change's own transaction: the endpoint or its new
secret commits only with the secret kept, so no secret exists that nobody can ever see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import ApiError
from app.models import OrganizationSettings, WebhookDelivery, WebhookEndpoint
from app.services import audit
from app.services.paging import page
from app.services.tenancy import tenant_get
from app.services.webhooks import (
    UrlRefused,
    create_endpoint,
    delete_endpoint,
    resolve,
    rotate_secret,
    url_for_audit,
)

if TYPE_CHECKING:
    from app.security.callers import RequestContext
    from app.services.events import Events
    from app.state import Usher


def endpoints_query(ctx: RequestContext):
    """The endpoints of the caller's organization and mode (page them by id: oldest first)."""
    return select(WebhookEndpoint).where(WebhookEndpoint.organization_id == ctx.organization_id,
                                         WebhookEndpoint.mode == ctx.mode)


def endpoints_page(session: Session, ctx: RequestContext, limit: int, starting_after: str | None) -> dict:
    """A page of the caller's endpoints, oldest first (the `GET /webhook-endpoints` answer)."""
    return page(session, endpoints_query(ctx), WebhookEndpoint.id, limit, starting_after)


Reveal = Callable[[Session, WebhookEndpoint, str], None]
"""Keeps a new secret (`session`, the endpoint, the secret) in the transaction that made it."""

MAX_ENDPOINTS = 16  # per organization and mode: one event fans out to at most this many POSTs


def check_url(url: str, mode: str, private_ok: bool) -> None:
    """The SSRF rules of the mode; a refused URL is a `validation_error` on `url` with the reason."""
    try:
        resolve(url, mode, private_ok)
    except UrlRefused as exc:
        raise ApiError("validation_error", details={"url": [str(exc)]}) from None


def create_endpoint_for(usher: Usher, events: Events, ctx: RequestContext, data: dict, *,
                        reveal: Reveal | None = None) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint (`WebhookEndpointIn` data) of the caller's tenant, audited; returns it
    and its secret, which is never available again (`reveal`: kept in the same transaction)."""
    check_url(data["url"], ctx.mode, usher.settings.private_webhook_targets_allowed)
    now = usher.clock()
    with usher.db.transaction(usher.session()) as session:
        # The mode's settings row, locked: concurrent creators count one after the other.
        session.get_one(OrganizationSettings, (ctx.organization_id, ctx.mode), with_for_update=True)
        count = session.scalar(select(func.count()).select_from(WebhookEndpoint).where(
            WebhookEndpoint.organization_id == ctx.organization_id, WebhookEndpoint.mode == ctx.mode))
        if (count or 0) >= MAX_ENDPOINTS:
            raise ApiError("validation_error", details={"_body": [
                f"At most {MAX_ENDPOINTS} webhook endpoints per organization and mode: delete one first."]})
        endpoint, secret = create_endpoint(session, usher.settings.app_secret, ctx.organization_id, ctx.mode,
                                           data["url"], data["events"], data.get("description"), now)
        audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "webhook_endpoint.created",
                     ("webhook_endpoint", endpoint.id),
                     {"url": url_for_audit(endpoint.url), "events": endpoint.events}, now)
        if reveal is not None:
            reveal(session, endpoint, secret)
    events.forget(ctx.organization_id, ctx.mode)
    return endpoint, secret


def rotate_secret_for(usher: Usher, ctx: RequestContext, endpoint_id: str, expires_in: int, *,
                      reveal: Reveal | None = None) -> tuple[WebhookEndpoint, str]:
    """A new secret for an endpoint of the caller's tenant (the old one signs beside it for
    `expires_in` seconds), audited; returns the endpoint and the new secret, shown once
    (`reveal`: kept in the same transaction)."""
    now = usher.clock()
    with usher.db.transaction(usher.session()) as session:
        endpoint = tenant_get(session, WebhookEndpoint, endpoint_id, ctx)
        secret = rotate_secret(endpoint, usher.settings.app_secret, expires_in, now)
        audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "webhook_endpoint.secret_rotated",
                     ("webhook_endpoint", endpoint.id), {"expiresIn": expires_in}, now)
        if reveal is not None:
            reveal(session, endpoint, secret)
    return endpoint, secret


def delete_endpoint_for(usher: Usher, events: Events, ctx: RequestContext, endpoint_id: str) -> WebhookEndpoint:
    """Delete an endpoint of the caller's tenant with its deliveries, audited; returns the row gone."""
    with usher.db.transaction(usher.session()) as session:
        endpoint = tenant_get(session, WebhookEndpoint, endpoint_id, ctx)
        audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "webhook_endpoint.deleted",
                     ("webhook_endpoint", endpoint.id), {"url": url_for_audit(endpoint.url)}, usher.clock())
        delete_endpoint(session, endpoint)
    events.forget(ctx.organization_id, ctx.mode)
    return endpoint


def endpoint_deliveries(session: Session, ctx: RequestContext, endpoint_id: str,
                        limit: int) -> tuple[WebhookEndpoint, list[dict]]:
    """An endpoint of the caller's tenant and its latest deliveries, newest first (`DeliveryOut`)."""
    endpoint = tenant_get(session, WebhookEndpoint, endpoint_id, ctx)
    rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
                           .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.event_id.desc())
                           .limit(limit))
    return endpoint, [{"id": r.event_id, "event_type": r.event_type, "status": r.status, "attempts": r.attempts,
                       "last_response_status": r.last_response_status, "last_error": r.last_error,
                       "next_attempt_at": r.next_attempt_at}
                      for r in rows]
