"""signing key purposes and stages: access/refresh keyrings, staged activation, retirement

Keys made before this revision signed access and refresh tokens alike: they become `legacy`
(published, and still verifying both kinds until their tokens expire). `retired_at` used to
mean "replaced" (its `publish_until` says how long it stays published): it now means
"withdrawn", so it is cleared here. Sessions remember the refresh key of their generation.

Revision ID: 0007_signing_key_stages
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = '0007_signing_key_stages'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purpose', sa.String(length=16), nullable=False, server_default='legacy'))
        batch_op.add_column(sa.Column('activates_at', sa.DateTime(), nullable=True))
    op.execute("UPDATE signing_keys SET activates_at = created_at, retired_at = NULL")
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.alter_column('activates_at', existing_type=sa.DateTime(), nullable=False)
        batch_op.alter_column('purpose', existing_type=sa.String(length=16), server_default=None)
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('generation_refresh_kid', sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('generation_refresh_kid')
    # Refresh keys cannot verify anything once purposes are gone: drop them; a withdrawn key
    # becomes a replaced one that is no longer published.
    op.execute("DELETE FROM signing_keys WHERE purpose = 'refresh'")
    op.execute("UPDATE signing_keys SET publish_until = retired_at WHERE retired_at IS NOT NULL")
    op.execute("UPDATE signing_keys SET retired_at = activates_at"
               " WHERE retired_at IS NULL AND publish_until IS NOT NULL")
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.drop_column('activates_at')
        batch_op.drop_column('purpose')
