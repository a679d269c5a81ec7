"""bot defense settings per mode: provider, protected routes, captcha site key and sealed secret,
ALTCHA complexity

Revision ID: 0011_bot_defense
Revises: 0010_plugin_settings
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_bot_defense"
down_revision = "0010_plugin_settings"
branch_labels = None
depends_on = None

ROUTES = '["guest", "otp_request", "queue_enter"]'


def upgrade() -> None:
    with op.batch_alter_table("organization_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bot_defense", sa.String(length=40), nullable=False, server_default="off"))
        batch_op.add_column(sa.Column("bot_defense_routes", sa.JSON(), nullable=False,
                                      server_default=ROUTES))
        batch_op.add_column(sa.Column("bot_defense_site_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("bot_defense_secret", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("altcha_complexity", sa.String(length=10), nullable=False,
                                      server_default="auto"))
    # Existing rows got every route; new rows get theirs from the model (a JSON default is not
    # comparable on PostgreSQL, so the column keeps none, like allowed_origins).
    with op.batch_alter_table("organization_settings", schema=None) as batch_op:
        batch_op.alter_column("bot_defense_routes", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("organization_settings", schema=None) as batch_op:
        for column in ("altcha_complexity", "bot_defense_secret", "bot_defense_site_key", "bot_defense_routes",
                       "bot_defense"):
            batch_op.drop_column(column)
