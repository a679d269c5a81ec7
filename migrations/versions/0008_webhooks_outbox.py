"""webhook endpoints, subscriptions, the event outbox and deliveries

Revision ID: 0006_webhooks_outbox
Revises: 0008_audit_restricted_keys
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = '0006_webhooks_outbox'
down_revision = '0008_audit_restricted_keys'
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str):
    referred = target.split('.')[0]
    return sa.ForeignKeyConstraint([column], [target], name=op.f(f'fk_{table}_{column}_{referred}'),
                                   ondelete='CASCADE')


def upgrade() -> None:
    op.create_table(
        'webhook_endpoints',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('organization_id', sa.String(length=40), nullable=False),
        sa.Column('mode', sa.String(length=4), nullable=False),
        sa.Column('url', sa.String(length=2048), nullable=False),
        sa.Column('events', sa.JSON(), nullable=False),
        sa.Column('description', sa.String(length=500), nullable=True),
        sa.Column('secret_sealed', sa.LargeBinary(), nullable=False),
        sa.Column('previous_secret_sealed', sa.LargeBinary(), nullable=True),
        sa.Column('previous_expires_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        _fk('webhook_endpoints', 'organization_id', 'organizations.id'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints')),
    )
    with op.batch_alter_table('webhook_endpoints', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_endpoints_tenant', ['organization_id', 'mode', 'id'], unique=False)

    op.create_table(
        'webhook_events',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('organization_id', sa.String(length=40), nullable=False),
        sa.Column('mode', sa.String(length=4), nullable=False),
        sa.Column('type', sa.String(length=40), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        _fk('webhook_events', 'organization_id', 'organizations.id'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_events')),
    )
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_events_created_at', ['created_at'], unique=False)

    op.create_table(
        'webhook_deliveries',
        sa.Column('endpoint_id', sa.String(length=40), nullable=False),
        sa.Column('event_id', sa.String(length=40), nullable=False),
        sa.Column('organization_id', sa.String(length=40), nullable=False),
        sa.Column('mode', sa.String(length=4), nullable=False),
        sa.Column('event_type', sa.String(length=40), nullable=False),
        sa.Column('status', sa.String(length=9), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_response_status', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.String(length=200), nullable=True),
        sa.Column('last_attempt_at', sa.DateTime(), nullable=True),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        _fk('webhook_deliveries', 'endpoint_id', 'webhook_endpoints.id'),
        _fk('webhook_deliveries', 'event_id', 'webhook_events.id'),
        sa.PrimaryKeyConstraint('endpoint_id', 'event_id', name=op.f('pk_webhook_deliveries')),
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_webhook_deliveries_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_webhook_deliveries_endpoint', ['endpoint_id', 'created_at'], unique=False)

    op.create_table(
        'webhook_subscriptions',
        sa.Column('endpoint_id', sa.String(length=40), nullable=False),
        sa.Column('event_type', sa.String(length=40), nullable=False),
        sa.Column('organization_id', sa.String(length=40), nullable=False),
        sa.Column('mode', sa.String(length=4), nullable=False),
        _fk('webhook_subscriptions', 'endpoint_id', 'webhook_endpoints.id'),
        sa.PrimaryKeyConstraint('endpoint_id', 'event_type', name=op.f('pk_webhook_subscriptions')),
    )
    with op.batch_alter_table('webhook_subscriptions', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_subscriptions_tenant_type', ['organization_id', 'mode', 'event_type'],
                              unique=False)


def downgrade() -> None:
    op.drop_table('webhook_subscriptions')
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_events')
    op.drop_table('webhook_endpoints')
