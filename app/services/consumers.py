"""Consumers as the admin API and the dashboard see them: search, views, sessions, revocation."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.models import AuthSession, Consumer, ExternalIdentity
from app.services import audit
from app.services.paging import page
from app.services.sessions import revoke_sessions

if TYPE_CHECKING:
    from app.services.events import Events


def consumer_query(organization_id: str, mode: str, email: str | None = None, phone: str | None = None) -> Select:
    """Consumers of one tenant, optionally by email (case-insensitive) or phone (E.164)."""
    query = select(Consumer).where(Consumer.organization_id == organization_id, Consumer.mode == mode)
    if email:
        query = query.where(Consumer.email == email.strip().lower())
    if phone:
        query = query.where(Consumer.phone == phone.strip())
    return query


def consumer_page(session: Session, organization_id: str, mode: str, args: dict) -> dict:
    """A page of a tenant's consumers (`ConsumerListArgs`: by email or phone, keyset paging),
    as `consumer_views`: the `GET /consumers` answer."""
    query = consumer_query(organization_id, mode, args.get("email"), args.get("phone"))
    result = page(session, query, Consumer.id, args["limit"], args.get("starting_after"))
    return {"data": consumer_views(session, result["data"]), "has_more": result["has_more"]}


def consumer_views(session: Session, consumers: list[Consumer]) -> list[dict]:
    """Consumers with their external identities (one query for the whole page)."""
    identities: dict[str, list] = {c.id: [] for c in consumers}
    if consumers:
        for identity in session.scalars(select(ExternalIdentity).where(
                ExternalIdentity.consumer_id.in_(list(identities))).order_by(ExternalIdentity.id)):
            identities[identity.consumer_id].append(identity)
    return [{"id": c.id, "email": c.email, "phone": c.phone, "external_identities": identities[c.id],
             "merged_into": c.merged_into, "created_at": c.created_at} for c in consumers]


def consumer_sessions(session: Session, consumer: Consumer) -> list[AuthSession]:
    """A consumer's sessions, newest last, revoked ones included."""
    return list(session.scalars(select(AuthSession).where(AuthSession.consumer_id == consumer.id)
                                .order_by(AuthSession.id)))


def end_consumer_sessions(session: Session, events: Events, ctx, consumer: Consumer, now: datetime) -> int:
    """Revoke every live session of the consumer (an admin's act), audited; return how many."""
    count = revoke_sessions(session.connection(), events, "admin", now, AuthSession.consumer_id == consumer.id)
    audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "consumer.sessions_revoked",
                 ("consumer", consumer.id), {"reason": "admin", "count": count}, now)
    return count


def end_session(session: Session, events: Events, ctx, row: AuthSession, now: datetime) -> int:
    """Revoke one session (an admin's act), audited when it was live: its refresh token fails
    and its access token is refused from now on."""
    count = revoke_sessions(session.connection(), events, "admin", now, AuthSession.id == row.id)
    if count:
        audit.record(session, ctx.organization_id, ctx.mode, audit.Actor.of(ctx), "session.revoked",
                     ("session", row.id), {"reason": "admin", "consumerId": row.consumer_id}, now)
    return count
