"""settings per (organization, mode), allowed origins, queue admission

Today's organization settings are copied to both modes; test mode allows the local origins
(`http://localhost:*`, `http://127.0.0.1:*`), live mode none. Downgrading keeps the live ones.

Revision ID: 0005_settings_per_mode
Revises: 0007_signing_key_stages
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = '0005_settings_per_mode'
down_revision = '0007_signing_key_stages'
branch_labels = None
depends_on = None

SETTINGS = ('access_token_ttl', 'refresh_token_ttl', 'otp_ttl', 'otp_length', 'otp_cooldown',
            'otp_requests_per_hour', 'otp_requests_per_ip_per_hour', 'otp_verifies_per_ip_per_hour')
DEFAULTS = {'access_token_ttl': '3600', 'refresh_token_ttl': str(30 * 24 * 3600), 'otp_ttl': '300',
            'otp_length': '6', 'otp_cooldown': '30', 'otp_requests_per_hour': '5',
            'otp_requests_per_ip_per_hour': '20', 'otp_verifies_per_ip_per_hour': '30'}
ALLOWED_ORIGINS = {'test': ['http://localhost:*', 'http://127.0.0.1:*'], 'live': []}

organizations = sa.table('organizations', sa.column('id'), *(sa.column(name) for name in SETTINGS))
organization_settings = sa.table('organization_settings', sa.column('organization_id'), sa.column('mode'),
                                 *(sa.column(name) for name in SETTINGS), sa.column('allowed_origins', sa.JSON()))


def upgrade() -> None:
    op.create_table(
        'organization_settings',
        sa.Column('organization_id', sa.String(length=40), nullable=False),
        sa.Column('mode', sa.String(length=4), nullable=False),
        *[sa.Column(name, sa.Integer(), nullable=False) for name in SETTINGS[:4]],
        *[sa.Column(name, sa.Integer(), server_default=DEFAULTS[name], nullable=False) for name in SETTINGS[4:]],
        sa.Column('allowed_origins', sa.JSON(), nullable=False),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f('ck_organization_settings_mode')),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'],
                                name=op.f('fk_organization_settings_organization_id_organizations'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('organization_id', 'mode', name=op.f('pk_organization_settings')),
    )
    for mode, origins in ALLOWED_ORIGINS.items():
        op.execute(organization_settings.insert().from_select(
            ['organization_id', 'mode', *SETTINGS, 'allowed_origins'],
            sa.select(organizations.c.id, sa.literal(mode, sa.String()), *(organizations.c[name] for name in SETTINGS),
                      sa.literal(origins, sa.JSON()))))
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        for name in SETTINGS:
            batch_op.drop_column(name)

    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.add_column(sa.Column('admission', sa.String(length=10), server_default='any', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.drop_column('admission')

    with op.batch_alter_table('organizations', schema=None) as batch_op:
        for name in SETTINGS:
            batch_op.add_column(sa.Column(name, sa.Integer(), server_default=DEFAULTS[name], nullable=False))
    live = organization_settings.alias('live')
    mine = (live.c.organization_id == organizations.c.id) & (live.c.mode == 'live')
    op.execute(organizations.update()
               .values({name: sa.select(live.c[name]).where(mine).scalar_subquery() for name in SETTINGS})
               .where(sa.exists().where(mine)))
    op.drop_table('organization_settings')
