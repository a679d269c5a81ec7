"""dashboard sessions: a signed-in browser refers to its key by id (never by value)

Revision ID: 0009_dashboard_sessions
Revises: 0006_webhooks_outbox
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = '0009_dashboard_sessions'
down_revision = '0006_webhooks_outbox'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'dashboard_sessions',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('key_id', sa.String(length=40), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(), nullable=False),
        sa.Column('reveal', sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], name=op.f('fk_dashboard_sessions_key_id_api_keys'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_dashboard_sessions')),
    )
    with op.batch_alter_table('dashboard_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dashboard_sessions_key_id'), ['key_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dashboard_sessions_last_seen_at'), ['last_seen_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dashboard_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dashboard_sessions_last_seen_at'))
        batch_op.drop_index(batch_op.f('ix_dashboard_sessions_key_id'))
    op.drop_table('dashboard_sessions')
