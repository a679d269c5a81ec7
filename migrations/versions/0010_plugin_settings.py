"""plugin settings: each mode's values of the settings fields that grant plugins declare

Revision ID: 0010_plugin_settings
Revises: 0009_dashboard_sessions
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_plugin_settings"
down_revision = "0009_dashboard_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organization_settings") as batch_op:
        batch_op.add_column(sa.Column("plugin_settings", sa.JSON(), server_default="{}", nullable=False))
    with op.batch_alter_table("organization_settings") as batch_op:
        # Existing rows got "{}" (every plugin field at its default); new rows get it from the model.
        batch_op.alter_column("plugin_settings", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("organization_settings") as batch_op:
        batch_op.drop_column("plugin_settings")
