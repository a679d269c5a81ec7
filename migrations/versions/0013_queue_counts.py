"""queue counts: a queue's position from counters of QUEUED entries per aligned sequence range,
backfilled from the entries already queued

Revision ID: 0013_queue_counts
Revises: 0012_audit_chain_binding
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = '0013_queue_counts'
down_revision = '0012_audit_chain_binding'
branch_labels = None
depends_on = None

FANOUT_BITS, LEVELS = 6, 3  # as app/services/queues.py: nodes of 64, 4096 and 262144 sequences


def upgrade() -> None:
    op.create_table(
        'queue_counts',
        sa.Column('queue_id', sa.String(length=40), nullable=False),
        sa.Column('level', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('node', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('queued', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['queue_id'], ['queues.id'], name=op.f('fk_queue_counts_queue_id_queues'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('queue_id', 'level', 'node', name=op.f('pk_queue_counts')),
    )
    for level in range(1, LEVELS + 1):
        span = 1 << (FANOUT_BITS * level)  # sequences are whole numbers: / is integer division on both
        node = f"sequence / {span}"
        op.execute("INSERT INTO queue_counts (queue_id, level, node, queued) "  # noqa: S608 (constants)
                   f"SELECT queue_id, {level}, {node}, count(*) FROM queue_entries "
                   f"WHERE status = 'QUEUED' GROUP BY queue_id, {node}")


def downgrade() -> None:
    op.drop_table('queue_counts')
