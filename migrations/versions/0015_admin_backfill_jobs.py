"""Admin backfill jobs: the cursor of the next chunk, chunks committed, the report, who asked.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 06:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision: str = '0015'
down_revision: Union[str, Sequence[str], None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('backfill_jobs', sa.Column('cursor', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column('backfill_jobs', sa.Column('chunks_done', sa.BigInteger(), server_default='0', nullable=False))
    op.add_column('backfill_jobs', sa.Column('report', postgresql.JSONB(astext_type=sa.Text()),
                                             server_default=sa.text("'{}'::jsonb"), nullable=False))
    op.add_column('backfill_jobs', sa.Column('requested_by', sa.Text(), nullable=True))
    op.create_index('idx_backfill_jobs_kind', 'backfill_jobs', ['kind', sa.text('id DESC')], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('idx_backfill_jobs_kind', table_name='backfill_jobs')
    op.drop_column('backfill_jobs', 'requested_by')
    op.drop_column('backfill_jobs', 'report')
    op.drop_column('backfill_jobs', 'chunks_done')
    op.drop_column('backfill_jobs', 'cursor')
