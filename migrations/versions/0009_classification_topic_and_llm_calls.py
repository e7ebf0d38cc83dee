"""Classification: whether a post is about cannabis at all, and a log of every LLM call.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 03:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('post_classifications',
                  sa.Column('cannabis_related', sa.Boolean(), server_default='true', nullable=False))
    op.create_table(
        'llm_calls',
        sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column('called_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('purpose', sa.Text(), nullable=False),
        sa.Column('model', sa.Text(), nullable=False),
        sa.Column('posts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('attempt', sa.SmallInteger(), server_default='1', nullable=False),
        sa.Column('cache_hit_tokens', sa.Integer(), server_default='0', nullable=False),
        sa.Column('cache_miss_tokens', sa.Integer(), server_default='0', nullable=False),
        sa.Column('output_tokens', sa.Integer(), server_default='0', nullable=False),
        sa.Column('cost_usd', sa.Numeric(12, 6), server_default='0', nullable=False),
        sa.Column('latency_ms', sa.Integer(), nullable=True),
        sa.Column('outcome', sa.Text(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('ok','invalid','blank','rate_limited','server_error','network_error','refused','spend_cap')",
            name=op.f('ck_llm_calls_outcome')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_calls')),
    )
    op.create_index('idx_llm_calls_called_at', 'llm_calls', [sa.text('called_at DESC')], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('idx_llm_calls_called_at', table_name='llm_calls')
    op.drop_table('llm_calls')
    op.drop_column('post_classifications', 'cannabis_related')
