"""Indexes in the exact order feeds, profile tabs, replies and follow lists page in
((sort_at, cid) descending; replies oldest first; follows newest first).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 04:16:50.457703

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index('idx_follows_follower_recent', 'follows', ['follower_did', sa.literal_column('created_at DESC'), sa.literal_column('uri DESC')], unique=False)
    op.create_index('idx_follows_following_recent', 'follows', ['following_did', sa.literal_column('created_at DESC'), sa.literal_column('uri DESC')], unique=False)
    op.drop_index(op.f('idx_posts_author'), table_name='posts')
    op.create_index('idx_posts_author', 'posts', ['author_did', sa.literal_column('sort_at DESC'), sa.literal_column('cid DESC')], unique=False)
    op.drop_index(op.f('idx_posts_author_media'), table_name='posts', postgresql_where='has_media')
    op.create_index('idx_posts_author_media', 'posts', ['author_did', sa.literal_column('sort_at DESC'), sa.literal_column('cid DESC')], unique=False, postgresql_where=sa.text('has_media'))
    op.drop_index(op.f('idx_posts_author_top'), table_name='posts', postgresql_where='(reply_parent_uri IS NULL)')
    op.create_index('idx_posts_author_top', 'posts', ['author_did', sa.literal_column('sort_at DESC'), sa.literal_column('cid DESC')], unique=False, postgresql_where=sa.text('reply_parent_uri IS NULL'))
    op.drop_index(op.f('idx_posts_cannabis'), table_name='posts', postgresql_where='has_cannabis_hashtag')
    op.create_index('idx_posts_cannabis', 'posts', [sa.literal_column('sort_at DESC'), sa.literal_column('cid DESC')], unique=False, postgresql_where=sa.text('has_cannabis_hashtag'))
    op.drop_index(op.f('idx_posts_cannect'), table_name='posts', postgresql_where='is_cannect_user')
    op.create_index('idx_posts_cannect', 'posts', [sa.literal_column('sort_at DESC'), sa.literal_column('cid DESC')], unique=False, postgresql_where=sa.text('is_cannect_user'))
    op.drop_index(op.f('idx_posts_created'), table_name='posts')
    op.create_index('idx_posts_created', 'posts', [sa.literal_column('sort_at DESC'), sa.literal_column('cid DESC')], unique=False)
    op.drop_index(op.f('idx_posts_reply_parent'), table_name='posts', postgresql_where='(reply_parent_uri IS NOT NULL)')
    op.create_index('idx_posts_reply_parent', 'posts', ['reply_parent_uri', 'sort_at', 'cid'], unique=False, postgresql_where=sa.text('reply_parent_uri IS NOT NULL'))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('idx_posts_reply_parent', table_name='posts', postgresql_where=sa.text('reply_parent_uri IS NOT NULL'))
    op.create_index(op.f('idx_posts_reply_parent'), 'posts', ['reply_parent_uri'], unique=False, postgresql_where='(reply_parent_uri IS NOT NULL)')
    op.drop_index('idx_posts_created', table_name='posts')
    op.create_index(op.f('idx_posts_created'), 'posts', [sa.literal_column('sort_at DESC'), 'cid'], unique=False)
    op.drop_index('idx_posts_cannect', table_name='posts', postgresql_where=sa.text('is_cannect_user'))
    op.create_index(op.f('idx_posts_cannect'), 'posts', [sa.literal_column('sort_at DESC'), 'cid'], unique=False, postgresql_where='is_cannect_user')
    op.drop_index('idx_posts_cannabis', table_name='posts', postgresql_where=sa.text('has_cannabis_hashtag'))
    op.create_index(op.f('idx_posts_cannabis'), 'posts', [sa.literal_column('sort_at DESC'), 'cid'], unique=False, postgresql_where='has_cannabis_hashtag')
    op.drop_index('idx_posts_author_top', table_name='posts', postgresql_where=sa.text('reply_parent_uri IS NULL'))
    op.create_index(op.f('idx_posts_author_top'), 'posts', ['author_did', sa.literal_column('sort_at DESC'), 'cid'], unique=False, postgresql_where='(reply_parent_uri IS NULL)')
    op.drop_index('idx_posts_author_media', table_name='posts', postgresql_where=sa.text('has_media'))
    op.create_index(op.f('idx_posts_author_media'), 'posts', ['author_did', sa.literal_column('sort_at DESC'), 'cid'], unique=False, postgresql_where='has_media')
    op.drop_index('idx_posts_author', table_name='posts')
    op.create_index(op.f('idx_posts_author'), 'posts', ['author_did', sa.literal_column('sort_at DESC'), 'cid'], unique=False)
    op.drop_index('idx_follows_following_recent', table_name='follows')
    op.drop_index('idx_follows_follower_recent', table_name='follows')
