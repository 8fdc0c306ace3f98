"""Live log lines of running containers (kept until their log collection is saved).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'live_logs',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('container_uuid', sa.String(length=27), nullable=False),
        sa.Column('file', sa.String(length=255), nullable=False),
        sa.Column('data', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_live_logs_container', 'live_logs', ['container_uuid', 'file', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_live_logs_container', table_name='live_logs')
    op.drop_table('live_logs')
