"""Backfill jobs with resumable chunks, tombstones of deleted records, and the AppView
baseline time of backfilled posts' counts.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 03:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision: str = '0013'
down_revision: Union[str, Sequence[str], None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('backfill_jobs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('subject_did', sa.Text(), nullable=True),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('status', sa.Text(), server_default='queued', nullable=False),
    sa.Column('done', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=True),
    sa.Column('records', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backfill_jobs'))
    )
    op.create_index('uq_backfill_jobs_open', 'backfill_jobs', ['kind', 'subject_did'], unique=True,
                    postgresql_where=sa.text("status IN ('queued', 'running')"))
    op.create_index('idx_backfill_jobs_subject', 'backfill_jobs', ['subject_did', sa.text('id DESC')], unique=False)
    op.create_index('idx_backfill_jobs_status', 'backfill_jobs', ['status', 'id'], unique=False)
    op.create_table('backfill_chunks',
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('account_did', sa.Text(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), server_default='pending', nullable=False),
    sa.Column('pages', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cursor', sa.Text(), nullable=True),
    sa.Column('records', sa.Integer(), server_default='0', nullable=False),
    sa.Column('skipped', sa.Integer(), server_default='0', nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('applied', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('job_id', 'account_did', 'source', name=op.f('pk_backfill_chunks'))
    )
    op.create_table('record_tombstones',
    sa.Column('uri', sa.Text(), nullable=False),
    sa.Column('time_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('uri', name=op.f('pk_record_tombstones'))
    )
    op.create_index('idx_record_tombstones_time', 'record_tombstones', ['time_us'], unique=False)
    op.add_column('posts', sa.Column('counts_as_of_us', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column('posts', 'counts_as_of_us')
    op.drop_index('idx_record_tombstones_time', table_name='record_tombstones')
    op.drop_table('record_tombstones')
    op.drop_table('backfill_chunks')
    op.drop_index('idx_backfill_jobs_status', table_name='backfill_jobs')
    op.drop_index('idx_backfill_jobs_subject', table_name='backfill_jobs')
    op.drop_index('uq_backfill_jobs_open', table_name='backfill_jobs')
    op.drop_table('backfill_jobs')
