"""Writing and checking the audit log.

`record` appends an event in the caller's own transaction (an ORM `Session` or a Core
`Connection` inside `Database.transaction()` / `Database.write()`), so a change and its event
commit or roll back together. Each (organization, mode) has one chain:
`hash = SHA-256(prevHash + canonical JSON of the event without hash)`, where the canonical JSON
is the API representation (`id, type, actor, target, details, createdAt, prevHash`) plus the
chain's `organizationId`, `mode` and the event's `seq` (1 for the first), with sorted keys and
no spaces, and the first event's `prevHash` is null (hashed as ""): a chain moved to another
tenant or mode, or an event moved within it, no longer verifies. What the database alone cannot
show (the newest events deleted and the head rewound, or everything recomputed) the signed
checkpoints can: `checkpoints()` signs each chain's head with a key derived from APP_SECRET, the
operator keeps them outside the database, and `verify_checkpoint` compares. Writers of one
chain are serialized by locking its head row (`audit_chains`, FOR UPDATE; SQLite's write lock
already serializes them), which is taken last in every transaction.

No Flask here: the API, the CLI, the grants and the dashboard all call these functions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, and_, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.models import AuditChain, AuditEvent, new_id

PLATFORM = ("", "")  # the chain of events that belong to no organization (signing keys)

_CHAINS = AuditChain.__table__
_EVENTS = AuditEvent.__table__
_HEAD_FOR_UPDATE = (select(_CHAINS.c.seq, _CHAINS.c.last_hash)
                    .where(_CHAINS.c.organization_id == bindparam("organization_id"),
                           _CHAINS.c.mode == bindparam("mode")).with_for_update())
_ADVANCE = (update(_CHAINS).where(_CHAINS.c.organization_id == bindparam("chain_org"),
                                  _CHAINS.c.mode == bindparam("chain_mode"))
            .values(seq=bindparam("new_seq"), last_hash=bindparam("new_hash")))
_INSERT_EVENT = insert(_EVENTS)


@dataclass(frozen=True)
class Actor:
    """Who made a change: a key (its id), the CLI, a consumer (its id) or Usher itself."""

    type: str
    id: str | None = None

    @classmethod
    def of(cls, ctx) -> Actor:
        """The actor of a resolved caller (`RequestContext`): its consumer, else its key."""
        if getattr(ctx, "consumer_id", None):
            return cls("consumer", ctx.consumer_id)
        return cls("key", ctx.key_id)


CLI = Actor("cli")
SYSTEM = Actor("system")


def instant(value: datetime) -> str:
    """The form `createdAt` is stored and hashed in: exact to the microsecond on every backend."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_body(row) -> dict:
    """The API representation of a stored event, without `hash` (what is hashed)."""
    return {"id": row.id, "type": row.type, "actor": {"type": row.actor_type, "id": row.actor_id},
            "target": {"type": row.target_type, "id": row.target_id}, "details": row.details,
            "createdAt": row.created_at, "prevHash": row.prev_hash}


def event_view(row) -> dict:
    return {**event_body(row), "hash": row.hash}


def canonical(body: dict) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(organization_id: str, mode: str, seq: int, prev_hash: str | None, body: dict) -> str:
    """The chain hash of an event (`body` from `event_body`) at `seq` of the (organization, mode) chain."""
    bound = {**body, "organizationId": organization_id, "mode": mode, "seq": seq}
    return hashlib.sha256(((prev_hash or "") + canonical(bound)).encode()).hexdigest()


def _connection(target: Session | Connection) -> Connection:
    if isinstance(target, Session):
        target.flush()  # the change's own row locks come before the chain head's
        return target.connection()
    return target


def _lock_head(connection: Connection, organization_id: str, mode: str):
    key = {"organization_id": organization_id, "mode": mode}
    head = connection.execute(_HEAD_FOR_UPDATE, key).first()
    if head is None:
        # The chain's first event: create its head; a concurrent creator's row wins, and then
        # FOR UPDATE waits for that creator's commit.
        dialect_insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
        connection.execute(dialect_insert(_CHAINS).values(**key, seq=0, last_hash=None).on_conflict_do_nothing())
        head = connection.execute(_HEAD_FOR_UPDATE, key).first()
    return head


def record(target: Session | Connection, organization_id: str, mode: str, actor: Actor, event_type: str,
           subject: tuple[str, str | None] | None, details: dict | None, now: datetime) -> dict:
    """Append one event to the (organization, mode) chain inside the caller's transaction.

    `subject` is the target `(type, id)`; `details` must never hold a key value, token or code.
    Returns the event as the API shows it."""
    connection = _connection(target)
    head = _lock_head(connection, organization_id, mode)
    target_type, target_id = subject or (None, None)
    row = AuditEvent(id=new_id("evt"), type=event_type, actor_type=actor.type, actor_id=actor.id,
                     target_type=target_type, target_id=target_id, details=details or {},
                     created_at=instant(now), prev_hash=head.last_hash)
    seq = head.seq + 1
    row.hash = event_hash(organization_id, mode, seq, row.prev_hash, event_body(row))
    connection.execute(_INSERT_EVENT, {"id": row.id, "organization_id": organization_id, "mode": mode, "seq": seq,
                                       "type": row.type, "actor_type": row.actor_type, "actor_id": row.actor_id,
                                       "target_type": row.target_type, "target_id": row.target_id,
                                       "details": row.details, "created_at": row.created_at,
                                       "prev_hash": row.prev_hash, "hash": row.hash})
    connection.execute(_ADVANCE, {"chain_org": organization_id, "chain_mode": mode, "new_seq": seq,
                                  "new_hash": row.hash})
    return event_view(row)


def changes(before: dict, after: dict) -> dict:
    """`{field: {"old", "new"}}` for the fields whose value changed."""
    return {name: {"old": before.get(name), "new": value} for name, value in after.items()
            if before.get(name) != value}


# -- reading ----------------------------------------------------------------------------------
def list_events(session: Session, organization_id: str, mode: str, limit: int, starting_after: str | None,
                event_type: str | None) -> dict:
    """Newest first; `starting_after` is the last id of the previous page."""
    query = select(AuditEvent).where(AuditEvent.organization_id == organization_id, AuditEvent.mode == mode)
    if event_type:
        query = query.where(AuditEvent.type == event_type)
    if starting_after:
        cursor = select(AuditEvent.seq).where(AuditEvent.id == starting_after, AuditEvent.organization_id
                                              == organization_id, AuditEvent.mode == mode).scalar_subquery()
        query = query.where(AuditEvent.seq < cursor)
    rows = list(session.scalars(query.order_by(AuditEvent.seq.desc()).limit(limit + 1)))
    return {"data": [event_view(row) for row in rows[:limit]], "has_more": len(rows) > limit}


# -- verifying --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Break:
    organization_id: str
    mode: str
    event_id: str | None
    reason: str

    def __str__(self) -> str:
        chain = f"{self.organization_id}/{self.mode}" if self.organization_id else "platform"
        return f"chain {chain}: event {self.event_id or '-'}: {self.reason}"


def verify_chains(connection: Connection, batch: int = 1000) -> Iterator[tuple[str, str, int, Break | None]]:
    """Recompute every chain in order; yield `(organization_id, mode, events, first break or None)`."""
    chains = connection.execute(select(_CHAINS).order_by(_CHAINS.c.organization_id, _CHAINS.c.mode)).all()
    known = {(c.organization_id, c.mode) for c in chains}
    # Events of a chain whose head is gone are a break too.
    for orphan in connection.execute(select(_EVENTS.c.organization_id, _EVENTS.c.mode).distinct()).all():
        if (orphan.organization_id, orphan.mode) not in known:
            first = connection.execute(select(_EVENTS.c.id).where(
                _EVENTS.c.organization_id == orphan.organization_id, _EVENTS.c.mode == orphan.mode)
                .order_by(_EVENTS.c.seq).limit(1)).scalar()
            yield orphan.organization_id, orphan.mode, 0, Break(orphan.organization_id, orphan.mode, first,
                                                                  "the chain has no head")
    for chain in chains:
        yield (chain.organization_id, chain.mode, *_verify_chain(connection, chain, batch))


def _verify_chain(connection: Connection, chain, batch: int) -> tuple[int, Break | None]:
    org, mode = chain.organization_id, chain.mode
    prev_hash, expected_seq, count = None, 1, 0
    while True:
        rows = connection.execute(select(_EVENTS).where(
            and_(_EVENTS.c.organization_id == org, _EVENTS.c.mode == mode, _EVENTS.c.seq >= expected_seq))
            .order_by(_EVENTS.c.seq).limit(batch)).all()
        for row in rows:
            if row.seq != expected_seq:
                return count, Break(org, mode, row.id, f"sequence {expected_seq} is missing (found {row.seq})")
            if row.prev_hash != prev_hash:
                return count, Break(org, mode, row.id, "prevHash does not match the previous event's hash")
            if event_hash(org, mode, row.seq, row.prev_hash, event_body(row)) != row.hash:
                return count, Break(org, mode, row.id, "stored fields do not match the hash")
            prev_hash, expected_seq, count = row.hash, expected_seq + 1, count + 1
        if len(rows) < batch:
            break
    if chain.seq != count or chain.last_hash != prev_hash:
        return count, Break(org, mode, None, f"the head says {chain.seq} events, {count} found (events removed)")
    return count, None


# -- checkpoints: heads signed for the operator to keep outside the database --------------------
def _checkpoint_key(app_secret: str) -> bytes:
    return hmac.new(app_secret.encode(), b"usher audit checkpoint v1", hashlib.sha256).digest()


def _signature(app_secret: str, organization_id: str, mode: str, seq: int, head_hash: str | None) -> str:
    message = canonical({"organizationId": organization_id, "mode": mode, "seq": seq, "hash": head_hash})
    return hmac.new(_checkpoint_key(app_secret), message.encode(), hashlib.sha256).hexdigest()


def checkpoints(connection: Connection, app_secret: str, now: datetime) -> list[dict]:
    """The head of every chain, signed: `{organizationId, mode, seq, hash, at, signature}`."""
    heads = connection.execute(select(_CHAINS).order_by(_CHAINS.c.organization_id, _CHAINS.c.mode)).all()
    return [{"organizationId": head.organization_id, "mode": head.mode, "seq": head.seq, "hash": head.last_hash,
             "at": instant(now), "signature": _signature(app_secret, head.organization_id, head.mode, head.seq,
                                                         head.last_hash)} for head in heads]


def verify_checkpoint(connection: Connection, app_secret: str, checkpoint: dict) -> str | None:
    """None when the chain still holds the checkpoint's event at its `seq` with its hash; else why not."""
    try:
        org, mode, seq, head_hash = (checkpoint["organizationId"], checkpoint["mode"], int(checkpoint["seq"]),
                                     checkpoint["hash"])
        signature = str(checkpoint["signature"])
    except (KeyError, TypeError, ValueError):
        return "not a checkpoint (organizationId, mode, seq, hash, signature)"
    chain = f"{org}/{mode}" if org else "platform"
    if not hmac.compare_digest(signature, _signature(app_secret, org, mode, seq, head_hash)):
        return f"chain {chain}: the checkpoint's signature does not match (forged, or another APP_SECRET)"
    if seq == 0:
        return None
    stored = connection.execute(select(_EVENTS.c.hash).where(
        _EVENTS.c.organization_id == org, _EVENTS.c.mode == mode, _EVENTS.c.seq == seq)).scalar()
    if stored is None:
        return f"chain {chain}: shorter than its checkpoint of {seq} events (events removed)"
    if stored != head_hash:
        return f"chain {chain}: event {seq} differs from its checkpoint (the chain was rewritten)"
    return None
