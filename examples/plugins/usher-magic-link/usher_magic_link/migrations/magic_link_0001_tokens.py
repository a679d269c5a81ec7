"""magic_link: the tokens table (the plugin's own Alembic branch).

Revision ID: magic_link_0001
Depends on: Usher's first revision (the organizations table)
"""

import sqlalchemy as sa
from alembic import op

revision = "magic_link_0001"
down_revision = None
branch_labels = ("magic_link",)
depends_on = "0001"


def upgrade() -> None:
    op.create_table(
        "magic_link_tokens",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE",
                                                                  name="fk_magic_link_tokens_organization_id"),
                  nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("consumed_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_magic_link_tokens_expires_at", "magic_link_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_magic_link_tokens_expires_at", table_name="magic_link_tokens")
    op.drop_table("magic_link_tokens")
