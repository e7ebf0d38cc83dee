"""Intelligence aggregates: trends and their posts, engagement snapshots, opportunity scores,
job bookkeeping, the three materialized views of cannect-intelligence-v2, and the triggers that
mark authors whose classified posts changed (docs/intelligence.md).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 02:48:25.217684

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# The newest classification of each post, about cannabis (older model versions of a
# re-classified post and off-topic posts count nowhere). Same rule as services/intelligence/base.py.
_LATEST = """pc.cannabis_related AND NOT EXISTS (
    SELECT 1 FROM post_classifications newer WHERE newer.post_id = pc.post_id AND newer.id > pc.id)"""

# Authors whose classified posts changed: a classification written, or a post deleted (its
# classifications go with it by cascade). Statement-level, so a batch costs one insert; in
# author order, so two transactions marking the same authors cannot deadlock.
TRIGGERS = [
    """CREATE FUNCTION intelligence_mark_classified() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO intelligence_dirty_authors (author_did)
        SELECT DISTINCT p.author_did FROM changed_rows c JOIN posts p ON p.id = c.post_id
        ORDER BY 1
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION intelligence_mark_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO intelligence_dirty_authors (author_did)
        SELECT DISTINCT author_did FROM changed_rows
        ORDER BY 1
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER intelligence_classification_inserted AFTER INSERT ON post_classifications
       REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION intelligence_mark_classified()""",
    """CREATE TRIGGER intelligence_classification_updated AFTER UPDATE ON post_classifications
       REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION intelligence_mark_classified()""",
    """CREATE TRIGGER intelligence_post_deleted AFTER DELETE ON posts
       REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION intelligence_mark_deleted()""",
]

# The seed's views, on our column names, each with a unique index so that
# REFRESH MATERIALIZED VIEW CONCURRENTLY works (readers never wait for a refresh).
VIEWS = [
    f"""CREATE MATERIALIZED VIEW mv_consumer_segments AS
    WITH recent AS (
        SELECT p.author_did, coalesce(pc.consumer_type, 'unknown') AS consumer_type,
               coalesce(pc.experience_level, 'unknown') AS experience_level,
               pc.sentiment_score, pc.purchase_intent, pc.lifestyle_tags
        FROM posts p JOIN post_classifications pc ON pc.post_id = p.id
        WHERE p.created_at > now() - interval '30 days' AND {_LATEST}
    ), lifestyles AS (
        SELECT consumer_type, experience_level, tag, count(*) AS n
        FROM recent CROSS JOIN LATERAL unnest(lifestyle_tags) AS tag
        GROUP BY 1, 2, 3
    )
    SELECT r.consumer_type, r.experience_level,
           count(DISTINCT r.author_did) AS user_count,
           count(*) AS post_count,
           round(avg(r.sentiment_score), 2) AS avg_sentiment,
           round(avg(r.purchase_intent), 2) AS avg_intent,
           coalesce((SELECT array_agg(l.tag ORDER BY l.n DESC, l.tag)
                     FROM lifestyles l
                     WHERE l.consumer_type = r.consumer_type AND l.experience_level = r.experience_level),
                    '{{}}') AS common_lifestyles
    FROM recent r
    GROUP BY r.consumer_type, r.experience_level""",
    "CREATE UNIQUE INDEX mv_consumer_segments_key ON mv_consumer_segments (consumer_type, experience_level)",
    f"""CREATE MATERIALIZED VIEW mv_trending_effects AS
    SELECT effect, date_trunc('day', p.created_at AT TIME ZONE 'UTC') AS day,
           count(*) AS mention_count, round(avg(pc.sentiment_score), 2) AS avg_sentiment
    FROM posts p
    JOIN post_classifications pc ON pc.post_id = p.id
    CROSS JOIN LATERAL unnest(pc.effects_mentioned) AS effect
    WHERE p.created_at > now() - interval '7 days' AND {_LATEST}
    GROUP BY 1, 2""",
    "CREATE UNIQUE INDEX mv_trending_effects_key ON mv_trending_effects (effect, day)",
    f"""CREATE MATERIALIZED VIEW mv_high_intent_users AS
    SELECT p.id AS post_id, p.author_did, a.handle AS author_handle, p.uri, p.text AS text_content,
           pc.purchase_intent, pc.purchase_stage, pc.product_category, pc.region_hint, p.created_at
    FROM posts p
    JOIN post_classifications pc ON pc.post_id = p.id
    LEFT JOIN profiles a ON a.did = p.author_did
    WHERE pc.purchase_intent >= 70 AND p.created_at > now() - interval '24 hours' AND {_LATEST}
    ORDER BY pc.purchase_intent DESC, p.created_at DESC""",
    "CREATE UNIQUE INDEX mv_high_intent_users_key ON mv_high_intent_users (post_id)",
]

DROP_VIEWS_AND_TRIGGERS = [
    "DROP MATERIALIZED VIEW IF EXISTS mv_high_intent_users",
    "DROP MATERIALIZED VIEW IF EXISTS mv_trending_effects",
    "DROP MATERIALIZED VIEW IF EXISTS mv_consumer_segments",
    "DROP TRIGGER IF EXISTS intelligence_post_deleted ON posts",
    "DROP TRIGGER IF EXISTS intelligence_classification_updated ON post_classifications",
    "DROP TRIGGER IF EXISTS intelligence_classification_inserted ON post_classifications",
    "DROP FUNCTION IF EXISTS intelligence_mark_deleted()",
    "DROP FUNCTION IF EXISTS intelligence_mark_classified()",
]


def upgrade() -> None:
    """Upgrade schema."""
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table('intelligence_dirty_authors',
    sa.Column('author_did', sa.Text(), nullable=False),
    sa.Column('marked_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('author_did', name=op.f('pk_intelligence_dirty_authors'))
    )
    op.create_table('intelligence_runs',
    sa.Column('job', sa.Text(), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('rows', sa.Integer(), server_default='0', nullable=False),
    sa.Column('runs', sa.BigInteger(), server_default='1', nullable=False),
    sa.PrimaryKeyConstraint('job', name=op.f('pk_intelligence_runs'))
    )
    op.create_table('opportunity_scores',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('region', sa.Text(), nullable=False),
    sa.Column('score', sa.Numeric(precision=5, scale=2), nullable=False),
    sa.Column('demand_score', sa.Numeric(precision=5, scale=2), nullable=False),
    sa.Column('unmet_need_score', sa.Numeric(precision=5, scale=2), nullable=False),
    sa.Column('saturation_score', sa.Numeric(precision=5, scale=2), nullable=False),
    sa.Column('parts', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('product','effect')", name=op.f('ck_opportunity_scores_kind')),
    sa.CheckConstraint('score BETWEEN 0 AND 100', name=op.f('ck_opportunity_scores_score')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_opportunity_scores')),
    sa.UniqueConstraint('kind', 'subject', 'region', name='uq_opportunity_scores_segment')
    )
    op.create_index('idx_opportunity_scores_rank', 'opportunity_scores', ['kind', sa.literal_column('score DESC')], unique=False)
    op.create_table('trends',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('window', sa.Text(), nullable=False),
    sa.Column('current_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('previous_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('velocity', sa.Float(), server_default='0', nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('hashtag','strain','brand','effect')", name=op.f('ck_trends_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trends')),
    sa.UniqueConstraint('kind', 'window', 'name', name='uq_trends_kind_window_name')
    )
    op.create_index('idx_trends_rising', 'trends', ['kind', 'window', sa.literal_column('velocity DESC')], unique=False)
    op.create_table('opportunity_samples',
    sa.Column('opportunity_id', sa.BigInteger(), nullable=False),
    sa.Column('post_id', sa.BigInteger(), nullable=False),
    sa.Column('rank', sa.SmallInteger(), nullable=False),
    sa.ForeignKeyConstraint(['opportunity_id'], ['opportunity_scores.id'], name=op.f('fk_opportunity_samples_opportunity_id_opportunity_scores'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['post_id'], ['posts.id'], name=op.f('fk_opportunity_samples_post_id_posts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('opportunity_id', 'post_id', name=op.f('pk_opportunity_samples'))
    )
    op.create_index('idx_opportunity_samples_post', 'opportunity_samples', ['post_id'], unique=False)
    op.create_table('post_metrics_history',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('post_id', sa.BigInteger(), nullable=False),
    sa.Column('captured_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('like_count', sa.Integer(), nullable=False),
    sa.Column('repost_count', sa.Integer(), nullable=False),
    sa.Column('reply_count', sa.Integer(), nullable=False),
    sa.Column('engagement_rate', sa.Float(), nullable=False),
    sa.Column('velocity', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['post_id'], ['posts.id'], name=op.f('fk_post_metrics_history_post_id_posts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_post_metrics_history'))
    )
    op.create_index('idx_post_metrics_captured', 'post_metrics_history', ['captured_at'], unique=False)
    op.create_index('idx_post_metrics_post', 'post_metrics_history', ['post_id', sa.literal_column('captured_at DESC')], unique=False)
    op.create_table('trend_sources',
    sa.Column('trend_id', sa.BigInteger(), nullable=False),
    sa.Column('post_id', sa.BigInteger(), nullable=False),
    sa.Column('relevance_score', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['post_id'], ['posts.id'], name=op.f('fk_trend_sources_post_id_posts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['trend_id'], ['trends.id'], name=op.f('fk_trend_sources_trend_id_trends'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('trend_id', 'post_id', name=op.f('pk_trend_sources'))
    )
    op.create_index('idx_trend_sources_post', 'trend_sources', ['post_id'], unique=False)
    # ### end Alembic commands ###
    for statement in TRIGGERS + VIEWS:
        op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    for statement in DROP_VIEWS_AND_TRIGGERS:
        op.execute(statement)
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_index('idx_trend_sources_post', table_name='trend_sources')
    op.drop_table('trend_sources')
    op.drop_index('idx_post_metrics_post', table_name='post_metrics_history')
    op.drop_index('idx_post_metrics_captured', table_name='post_metrics_history')
    op.drop_table('post_metrics_history')
    op.drop_index('idx_opportunity_samples_post', table_name='opportunity_samples')
    op.drop_table('opportunity_samples')
    op.drop_index('idx_trends_rising', table_name='trends')
    op.drop_table('trends')
    op.drop_index('idx_opportunity_scores_rank', table_name='opportunity_scores')
    op.drop_table('opportunity_scores')
    op.drop_table('intelligence_runs')
    op.drop_table('intelligence_dirty_authors')
    # ### end Alembic commands ###
