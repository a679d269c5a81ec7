"""APP_SECRET fingerprint, and which secret made each stored key lookup and refresh hash

Revision ID: 0014_app_secret_fingerprint
Revises: 0013_queue_counts
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = '0014_app_secret_fingerprint'
down_revision = '0013_queue_counts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'app_secret_fingerprints',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('recorded_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_app_secret_fingerprints')),
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lookup_fingerprint', sa.String(length=16), nullable=True))
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refresh_fingerprint', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('refresh_fingerprint')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('lookup_fingerprint')
    op.drop_table('app_secret_fingerprints')
