"""audit chain binding: each event's hash also covers its organization, mode and sequence number

Rehashes every audit chain that verifies under the previous rule (hash of prevHash + the API
body) with the new one (the body plus `organizationId`, `mode` and `seq`), relinking `prevHash`
and the head. A chain that does not verify is rehashed only up to its first bad event, so
`audit verify` still reports the break at that very event. The hashing is spelled out here (no
app import): a migration must keep meaning what it meant when it was written.

Revision ID: 0012_audit_chain_binding
Revises: 0011_bot_defense
Create Date: 2026-12-07
"""

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = '0012_audit_chain_binding'
down_revision = '0011_bot_defense'
branch_labels = None
depends_on = None

_chains = sa.table('audit_chains', sa.column('organization_id', sa.String), sa.column('mode', sa.String),
                   sa.column('seq', sa.Integer), sa.column('last_hash', sa.String))
_events = sa.table('audit_events', sa.column('id', sa.String), sa.column('organization_id', sa.String),
                   sa.column('mode', sa.String), sa.column('seq', sa.Integer), sa.column('type', sa.String),
                   sa.column('actor_type', sa.String), sa.column('actor_id', sa.String),
                   sa.column('target_type', sa.String), sa.column('target_id', sa.String),
                   sa.column('details', sa.JSON), sa.column('created_at', sa.String),
                   sa.column('prev_hash', sa.String), sa.column('hash', sa.String))


def _hash(row, prev_hash, bound: bool) -> str:
    body = {"id": row.id, "type": row.type, "actor": {"type": row.actor_type, "id": row.actor_id},
            "target": {"type": row.target_type, "id": row.target_id}, "details": row.details,
            "createdAt": row.created_at, "prevHash": prev_hash}
    if bound:
        body.update(organizationId=row.organization_id, mode=row.mode, seq=row.seq)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(((prev_hash or "") + text).encode()).hexdigest()


def _rehash(to_bound: bool) -> None:
    connection = op.get_bind()
    for chain in connection.execute(sa.select(_chains)).all():
        rows = connection.execute(sa.select(_events).where(
            _events.c.organization_id == chain.organization_id, _events.c.mode == chain.mode)
            .order_by(_events.c.seq)).all()
        old_prev = new_prev = None
        intact = True
        for expected_seq, row in enumerate(rows, start=1):
            if (row.seq != expected_seq or row.prev_hash != old_prev
                    or _hash(row, row.prev_hash, not to_bound) != row.hash):
                intact = False
                break
            new_hash = _hash(row, new_prev, to_bound)
            connection.execute(sa.update(_events).where(_events.c.id == row.id)
                               .values(prev_hash=new_prev, hash=new_hash))
            old_prev, new_prev = row.hash, new_hash
        if intact and chain.seq == len(rows) and chain.last_hash == old_prev:
            connection.execute(sa.update(_chains).where(_chains.c.organization_id == chain.organization_id,
                                                        _chains.c.mode == chain.mode).values(last_hash=new_prev))


def upgrade() -> None:
    _rehash(to_bound=True)


def downgrade() -> None:
    _rehash(to_bound=False)
