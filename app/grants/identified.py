"""What every identified sign-in shares: find or create the consumer, upgrade the guest,
start the session."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.grants.base import BaseGrant
from app.models import Consumer, new_id
from app.services.sessions import start_session
from app.services.upgrade import merge_guest
from app.services.views import session_body


def find_or_create_consumer(session: Session, organization_id: str, mode: str, **identity) -> Consumer:
    """The consumer with this email or phone in the tenant, created on first sign-in."""
    (column, value), = identity.items()
    consumer = session.scalar(select(Consumer).where(Consumer.organization_id == organization_id,
                                                     Consumer.mode == mode, getattr(Consumer, column) == value))
    if consumer is None:
        consumer = Consumer(id=new_id("cons"), organization_id=organization_id, mode=mode, created_at=utcnow(),
                            **identity)
        session.add(consumer)
        session.flush()
    return consumer


def sign_in(grant: BaseGrant, session: Session, identity: dict, consumer: Consumer | None = None) -> dict:
    """Inside the grant's transaction: the consumer, the guest merge, the new session."""
    ctx, server = grant.request.ctx, grant.server
    if consumer is None:
        consumer = find_or_create_consumer(session, ctx.organization_id, ctx.mode, **identity)
    if grant.guest_id is not None:
        merge_guest(session, grant.guest_id, consumer.id)
    row, access, refresh = start_session(session, server.tokens, grant.kid, server.app_secret, ctx.organization,
                                         ctx.mode, consumer.id, grant.SESSION_TYPE)
    return session_body(row, access, refresh, guest_id=grant.guest_id)
