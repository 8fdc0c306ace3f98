"""Initial schema: users, tokens, containers, container requests, collections, dispatchers, events.

Revision ID: 0001
Revises: 
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
# runtime_status has an `error`: an indexed generated column, so "failing" is a cheap query.
# STORED (persisted=True): on PostgreSQL 18+ an unqualified generated column is VIRTUAL, and
# virtual generated columns cannot be indexed.
HAS_ERROR = {
    "sqlite": "json_extract(runtime_status, '$.error') IS NOT NULL",
    "postgresql": "(runtime_status -> 'error') IS NOT NULL",
}


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    op.create_table('collections',
    sa.Column('uuid', sa.String(length=27), nullable=False),
    sa.Column('owner_uuid', sa.String(length=27), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('portable_data_hash', sa.String(length=90), nullable=False),
    sa.Column('manifest', JSON, nullable=False),
    sa.Column('properties', JSON, nullable=False),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('modified_at', TIMESTAMP, nullable=False),
    sa.Column('trash_at', TIMESTAMP, nullable=True),
    sa.PrimaryKeyConstraint('uuid')
    )
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collections_owner_uuid'), ['owner_uuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_collections_portable_data_hash'), ['portable_data_hash'], unique=False)

    op.create_table('container_requests',
    sa.Column('uuid', sa.String(length=27), nullable=False),
    sa.Column('owner_uuid', sa.String(length=27), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('properties', JSON, nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('requesting_container_uuid', sa.String(length=27), nullable=True),
    sa.Column('container_uuid', sa.String(length=27), nullable=True),
    sa.Column('container_count', sa.Integer(), nullable=False),
    sa.Column('container_count_max', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('held', sa.Boolean(), nullable=False),
    sa.Column('use_existing', sa.Boolean(), nullable=False),
    sa.Column('command', JSON, nullable=True),
    sa.Column('cwd', sa.Text(), nullable=True),
    sa.Column('environment', JSON, nullable=True),
    sa.Column('output_path', sa.Text(), nullable=True),
    sa.Column('output_glob', JSON, nullable=True),
    sa.Column('container_image', sa.Text(), nullable=True),
    sa.Column('mounts', JSON, nullable=True),
    sa.Column('secret_mounts', JSON, nullable=True),
    sa.Column('runtime_constraints', JSON, nullable=True),
    sa.Column('scheduling_parameters', JSON, nullable=True),
    sa.Column('output_name', sa.Text(), nullable=True),
    sa.Column('output_properties', JSON, nullable=False),
    sa.Column('log_uuid', sa.String(length=27), nullable=True),
    sa.Column('output_uuid', sa.String(length=27), nullable=True),
    sa.Column('cumulative_cost', sa.Float(), nullable=False),
    sa.Column('runtime_token', sa.Text(), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('modified_at', TIMESTAMP, nullable=False),
    sa.Column('expires_at', TIMESTAMP, nullable=True),
    sa.PrimaryKeyConstraint('uuid')
    )
    with op.batch_alter_table('container_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_container_requests_container_uuid'), ['container_uuid'], unique=False)
        batch_op.create_index('ix_container_requests_owner_created', ['owner_uuid', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_container_requests_requesting_container_uuid'), ['requesting_container_uuid'], unique=False)
        batch_op.create_index('ix_container_requests_state', ['state'], unique=False)

    op.create_table('containers',
    sa.Column('uuid', sa.String(length=27), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('command', JSON, nullable=False),
    sa.Column('cwd', sa.Text(), nullable=False),
    sa.Column('environment', JSON, nullable=False),
    sa.Column('output_path', sa.Text(), nullable=False),
    sa.Column('output_glob', JSON, nullable=False),
    sa.Column('container_image', sa.Text(), nullable=False),
    sa.Column('mounts', JSON, nullable=False),
    sa.Column('secret_mounts', JSON, nullable=True),
    sa.Column('runtime_constraints', JSON, nullable=False),
    sa.Column('scheduling_parameters', JSON, nullable=False),
    sa.Column('priority', sa.BigInteger(), nullable=False),
    sa.Column('progress', sa.Float(), nullable=True),
    sa.Column('runtime_status', JSON, nullable=False),
    sa.Column('has_error', sa.Boolean(), sa.Computed(HAS_ERROR[dialect], persisted=True), nullable=True),
    sa.Column('scheduling_status', sa.Text(), nullable=False),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('log', sa.Text(), nullable=True),
    sa.Column('output', sa.Text(), nullable=True),
    sa.Column('output_properties', JSON, nullable=False),
    sa.Column('lock_count', sa.Integer(), nullable=False),
    sa.Column('locked_by_uuid', sa.String(length=27), nullable=True),
    sa.Column('dispatcher_uuid', sa.String(length=27), nullable=True),
    sa.Column('auth', sa.Text(), nullable=True),
    sa.Column('started_at', TIMESTAMP, nullable=True),
    sa.Column('finished_at', TIMESTAMP, nullable=True),
    sa.Column('heartbeat_at', TIMESTAMP, nullable=True),
    sa.Column('cost', sa.Float(), nullable=False),
    sa.Column('subrequests_cost', sa.Float(), nullable=False),
    sa.Column('reuse_key', sa.String(length=64), nullable=False),
    sa.Column('reuse_digests', JSON, nullable=False),
    sa.Column('command_digest', sa.String(length=16), nullable=False),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('modified_at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('uuid')
    )
    with op.batch_alter_table('containers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_containers_command_digest'), ['command_digest'], unique=False)
        batch_op.create_index(batch_op.f('ix_containers_dispatcher_uuid'), ['dispatcher_uuid'], unique=False)
        batch_op.create_index('ix_containers_reuse', ['reuse_key', 'state'], unique=False)
        if dialect == "postgresql":
            batch_op.create_index('ix_containers_runtime_status_gin', ['runtime_status'], postgresql_using='gin')
        batch_op.create_index('ix_containers_state_error', ['state', 'has_error'], unique=False)
        batch_op.create_index('ix_containers_state_priority', ['state', 'priority'], unique=False)

    op.create_table('dispatchers',
    sa.Column('uuid', sa.String(length=27), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('hostname', sa.Text(), nullable=False),
    sa.Column('backend', sa.String(length=32), nullable=False),
    sa.Column('token_uuid', sa.String(length=27), nullable=False),
    sa.Column('alive', sa.Boolean(), nullable=False),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('last_ping_at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('uuid')
    )
    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('object_uuid', sa.String(length=27), nullable=False),
    sa.Column('object_kind', sa.String(length=64), nullable=False),
    sa.Column('event_type', sa.String(length=32), nullable=False),
    sa.Column('properties', JSON, nullable=False),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_created_at', ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_object_uuid'), ['object_uuid'], unique=False)

    op.create_table('request_containers',
    sa.Column('request_uuid', sa.String(length=27), nullable=False),
    sa.Column('container_uuid', sa.String(length=27), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('request_uuid', 'container_uuid')
    )
    with op.batch_alter_table('request_containers', schema=None) as batch_op:
        batch_op.create_index('ix_request_containers_container', ['container_uuid'], unique=False)

    op.create_table('tokens',
    sa.Column('uuid', sa.String(length=27), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('user_uuid', sa.String(length=27), nullable=False),
    sa.Column('container_uuid', sa.String(length=27), nullable=True),
    sa.Column('expires_at', TIMESTAMP, nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('uuid'),
    sa.UniqueConstraint('secret_hash')
    )
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tokens_container_uuid'), ['container_uuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_tokens_user_uuid'), ['user_uuid'], unique=False)

    op.create_table('users',
    sa.Column('uuid', sa.String(length=27), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('is_admin', sa.Boolean(), nullable=False),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('uuid'),
    sa.UniqueConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('users')
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tokens_user_uuid'))
        batch_op.drop_index(batch_op.f('ix_tokens_container_uuid'))

    op.drop_table('tokens')
    with op.batch_alter_table('request_containers', schema=None) as batch_op:
        batch_op.drop_index('ix_request_containers_container')

    op.drop_table('request_containers')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_object_uuid'))
        batch_op.drop_index('ix_events_created_at')

    op.drop_table('events')
    op.drop_table('dispatchers')
    with op.batch_alter_table('containers', schema=None) as batch_op:
        batch_op.drop_index('ix_containers_state_priority')
        batch_op.drop_index('ix_containers_state_error')
        if op.get_context().dialect.name == "postgresql":
            batch_op.drop_index('ix_containers_runtime_status_gin')
        batch_op.drop_index('ix_containers_reuse')
        batch_op.drop_index(batch_op.f('ix_containers_dispatcher_uuid'))
        batch_op.drop_index(batch_op.f('ix_containers_command_digest'))

    op.drop_table('containers')
    with op.batch_alter_table('container_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_container_requests_state')
        batch_op.drop_index(batch_op.f('ix_container_requests_requesting_container_uuid'))
        batch_op.drop_index('ix_container_requests_owner_created')
        batch_op.drop_index(batch_op.f('ix_container_requests_container_uuid'))

    op.drop_table('container_requests')
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collections_portable_data_hash'))
        batch_op.drop_index(batch_op.f('ix_collections_owner_uuid'))

    op.drop_table('collections')
