"""App API: login sessions (app refresh tokens, encrypted PDS tokens) and the indexes
behind feeds, profile tabs and search.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:10:55.050113

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('pds_sessions',
    sa.Column('did', sa.Text(), nullable=False),
    sa.Column('pds_url', sa.Text(), nullable=False),
    sa.Column('handle', sa.Text(), nullable=True),
    sa.Column('access_jwt', sa.LargeBinary(), nullable=False),
    sa.Column('refresh_jwt', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('did', name=op.f('pk_pds_sessions'))
    )
    op.create_table('app_sessions',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('did', sa.Text(), nullable=False),
    sa.Column('refresh_token_hash', sa.Text(), nullable=False),
    sa.Column('user_agent', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['did'], ['pds_sessions.did'], name=op.f('fk_app_sessions_did_pds_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_app_sessions')),
    sa.UniqueConstraint('refresh_token_hash', name=op.f('uq_app_sessions_refresh_token_hash'))
    )
    op.create_index('idx_app_sessions_did', 'app_sessions', ['did'], unique=False, postgresql_where=sa.text('revoked_at IS NULL'))
    op.drop_index(op.f('idx_posts_author'), table_name='posts')
    op.create_index('idx_posts_author', 'posts', ['author_did', sa.literal_column('sort_at DESC'), 'cid'], unique=False)
    op.drop_index(op.f('idx_posts_cannabis'), table_name='posts', postgresql_where='has_cannabis_hashtag')
    op.create_index('idx_posts_cannabis', 'posts', [sa.literal_column('sort_at DESC'), 'cid'], unique=False, postgresql_where=sa.text('has_cannabis_hashtag'))
    op.drop_index(op.f('idx_posts_cannect'), table_name='posts', postgresql_where='is_cannect_user')
    op.create_index('idx_posts_cannect', 'posts', [sa.literal_column('sort_at DESC'), 'cid'], unique=False, postgresql_where=sa.text('is_cannect_user'))
    op.create_index('idx_posts_author_media', 'posts', ['author_did', sa.literal_column('sort_at DESC'), 'cid'], unique=False, postgresql_where=sa.text('has_media'))
    op.create_index('idx_posts_author_top', 'posts', ['author_did', sa.literal_column('sort_at DESC'), 'cid'], unique=False, postgresql_where=sa.text('reply_parent_uri IS NULL'))
    op.create_index('idx_profiles_display_name_prefix', 'profiles', [sa.literal_column('lower(display_name) text_pattern_ops')], unique=False)
    op.create_index('idx_profiles_handle_prefix', 'profiles', [sa.literal_column('lower(handle) text_pattern_ops')], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('idx_profiles_handle_prefix', table_name='profiles')
    op.drop_index('idx_profiles_display_name_prefix', table_name='profiles')
    op.drop_index('idx_posts_author_top', table_name='posts', postgresql_where=sa.text('reply_parent_uri IS NULL'))
    op.drop_index('idx_posts_author_media', table_name='posts', postgresql_where=sa.text('has_media'))
    op.drop_index('idx_posts_cannect', table_name='posts', postgresql_where=sa.text('is_cannect_user'))
    op.create_index(op.f('idx_posts_cannect'), 'posts', [sa.literal_column('sort_at DESC')], unique=False, postgresql_where='is_cannect_user')
    op.drop_index('idx_posts_cannabis', table_name='posts', postgresql_where=sa.text('has_cannabis_hashtag'))
    op.create_index(op.f('idx_posts_cannabis'), 'posts', [sa.literal_column('sort_at DESC')], unique=False, postgresql_where='has_cannabis_hashtag')
    op.drop_index('idx_posts_author', table_name='posts')
    op.create_index(op.f('idx_posts_author'), 'posts', ['author_did', sa.literal_column('sort_at DESC')], unique=False)
    op.drop_index('idx_app_sessions_did', table_name='app_sessions', postgresql_where=sa.text('revoked_at IS NULL'))
    op.drop_table('app_sessions')
    op.drop_table('pds_sessions')
