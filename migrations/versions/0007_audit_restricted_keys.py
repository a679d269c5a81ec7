"""restricted keys (scopes), the audit log and its chain heads, SMS cost controls

Revision ID: 0008_audit_restricted_keys
Revises: 0005_settings_per_mode
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_audit_restricted_keys"
down_revision = "0005_settings_per_mode"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organization_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sms_allowed_countries", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("sms_per_hour", sa.Integer(), server_default="1000", nullable=False))
    with op.batch_alter_table("organization_settings", schema=None) as batch_op:
        # Existing rows got "[]" (every country); new rows get it from the model.
        batch_op.alter_column("sms_allowed_countries", server_default=None)

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.JSON(), nullable=True))
        batch_op.drop_constraint(op.f("ck_api_keys_type"), type_="check")
        batch_op.create_check_constraint("type", "type IN ('publishable', 'secret', 'restricted')")

    op.create_table(
        "audit_chains",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("mode", sa.String(length=4), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("organization_id", "mode", name=op.f("pk_audit_chains")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("mode", sa.String(length=4), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("target_type", sa.String(length=32), nullable=True),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=True),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("organization_id", "mode", "seq", name=op.f("uq_audit_events_chain_seq")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_chain_type", ["organization_id", "mode", "type", "seq"], unique=False)


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("audit_chains")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_api_keys_type"), type_="check")
        batch_op.create_check_constraint("type", "type IN ('publishable', 'secret')")
        batch_op.drop_column("scopes")
    with op.batch_alter_table("organization_settings", schema=None) as batch_op:
        batch_op.drop_column("sms_per_hour")
        batch_op.drop_column("sms_allowed_countries")
