"""Initial schema: the app tables (cannect-unified-vps) and the intelligence tables
(cannect-intelligence-v2) merged around one posts table, plus ingest bookkeeping.

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 02:45:12.909299

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('api_clients',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('client_name', sa.Text(), nullable=False),
    sa.Column('api_key', sa.Text(), nullable=False),
    sa.Column('api_secret_hash', sa.Text(), nullable=False),
    sa.Column('tier', sa.Text(), nullable=True),
    sa.Column('monthly_quota', sa.Integer(), nullable=True),
    sa.Column('allowed_endpoints', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('rate_limit_per_min', sa.Integer(), server_default='60', nullable=False),
    sa.Column('is_active', sa.Boolean(), server_default='true', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("tier IN ('starter','growth','enterprise','custom')", name=op.f('ck_api_clients_tier')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_clients')),
    sa.UniqueConstraint('api_key', name=op.f('uq_api_clients_api_key'))
    )
    op.create_table('brands',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('normalized_name', sa.Text(), nullable=False),
    sa.Column('aliases', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('category', sa.Text(), nullable=True),
    sa.Column('website', sa.Text(), nullable=True),
    sa.Column('is_verified', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('mention_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('avg_sentiment', sa.Numeric(precision=5, scale=2), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_brands')),
    sa.UniqueConstraint('name', name=op.f('uq_brands_name'))
    )
    op.create_index('idx_brands_normalized', 'brands', ['normalized_name'], unique=False)
    op.create_table('follows',
    sa.Column('uri', sa.Text(), nullable=False),
    sa.Column('follower_did', sa.Text(), nullable=False),
    sa.Column('following_did', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('uri', name=op.f('pk_follows'))
    )
    op.create_index('idx_follows_follower', 'follows', ['follower_did', 'following_did'], unique=False)
    op.create_index('idx_follows_following', 'follows', ['following_did', 'follower_did'], unique=False)
    op.create_table('ingest_pending',
    sa.Column('stream', sa.Text(), nullable=False),
    sa.Column('conn', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('prev_conn', sa.BigInteger(), nullable=True),
    sa.Column('prev_seq', sa.BigInteger(), nullable=True),
    sa.Column('events', sa.LargeBinary(), nullable=False),
    sa.Column('staged_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('stream', 'conn', 'seq', name=op.f('pk_ingest_pending'))
    )
    op.create_table('ingest_recent',
    sa.Column('stream', sa.Text(), nullable=False),
    sa.Column('time_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('stream', 'time_us', name=op.f('pk_ingest_recent'))
    )
    op.create_table('ingest_state',
    sa.Column('stream', sa.Text(), nullable=False),
    sa.Column('conn', sa.BigInteger(), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=True),
    sa.Column('applied_time_us', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('batches_applied', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('events_applied', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('duplicates_skipped', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('gaps_accepted', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('stream', name=op.f('pk_ingest_state'))
    )
    op.create_table('likes',
    sa.Column('uri', sa.Text(), nullable=False),
    sa.Column('actor_did', sa.Text(), nullable=False),
    sa.Column('subject_uri', sa.Text(), nullable=False),
    sa.Column('subject_cid', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('uri', name=op.f('pk_likes'))
    )
    op.create_index('idx_likes_actor', 'likes', ['actor_did', sa.literal_column('created_at DESC')], unique=False)
    op.create_index('idx_likes_subject', 'likes', ['subject_uri', 'actor_did'], unique=False)
    op.create_table('notifications',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('recipient_did', sa.Text(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('actor_did', sa.Text(), nullable=False),
    sa.Column('subject_uri', sa.Text(), nullable=True),
    sa.Column('reason_uri', sa.Text(), nullable=True),
    sa.Column('read', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("type IN ('like','repost','follow','reply','mention','quote')", name=op.f('ck_notifications_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('recipient_did', 'type', 'reason_uri', name='uq_notifications_reason')
    )
    op.create_index('idx_notifications_actor', 'notifications', ['actor_did'], unique=False)
    op.create_index('idx_notifications_recipient', 'notifications', ['recipient_did', sa.literal_column('created_at DESC')], unique=False)
    op.create_index('idx_notifications_unread', 'notifications', ['recipient_did'], unique=False, postgresql_where=sa.text('NOT read'))
    op.create_table('posts',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('uri', sa.Text(), nullable=False),
    sa.Column('cid', sa.Text(), nullable=False),
    sa.Column('author_did', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('indexed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('sort_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('indexed_time_us', sa.BigInteger(), nullable=False),
    sa.Column('reply_parent_uri', sa.Text(), nullable=True),
    sa.Column('reply_root_uri', sa.Text(), nullable=True),
    sa.Column('quote_uri', sa.Text(), nullable=True),
    sa.Column('like_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('repost_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('reply_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('engagement_updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('embed', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('embed_type', sa.Text(), nullable=True),
    sa.Column('has_media', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('media_count', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('facets', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('labels', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('langs', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('tags', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('has_cannabis_hashtag', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('is_cannect_user', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('raw_record', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('classification_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('processing_error', sa.Text(), nullable=True),
    sa.Column('created_date', sa.Date(), sa.Computed("((created_at AT TIME ZONE 'UTC'))::date", persisted=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_posts')),
    sa.UniqueConstraint('uri', name=op.f('uq_posts_uri'))
    )
    op.create_index('idx_posts_author', 'posts', ['author_did', sa.literal_column('sort_at DESC')], unique=False)
    op.create_index('idx_posts_cannabis', 'posts', [sa.literal_column('sort_at DESC')], unique=False, postgresql_where=sa.text('has_cannabis_hashtag'))
    op.create_index('idx_posts_cannect', 'posts', [sa.literal_column('sort_at DESC')], unique=False, postgresql_where=sa.text('is_cannect_user'))
    op.create_index('idx_posts_created', 'posts', [sa.literal_column('sort_at DESC'), 'cid'], unique=False)
    op.create_index('idx_posts_date', 'posts', ['created_date'], unique=False)
    op.create_index('idx_posts_indexed', 'posts', [sa.literal_column('indexed_at DESC')], unique=False)
    op.create_index('idx_posts_reply_parent', 'posts', ['reply_parent_uri'], unique=False, postgresql_where=sa.text('reply_parent_uri IS NOT NULL'))
    op.create_index('idx_posts_text_search', 'posts', [sa.literal_column("to_tsvector('english', coalesce(text, ''))")], unique=False, postgresql_using='gin')
    op.create_index('idx_posts_unprocessed', 'posts', ['id'], unique=False, postgresql_where=sa.text('processed_at IS NULL'))
    op.create_table('profiles',
    sa.Column('did', sa.Text(), nullable=False),
    sa.Column('handle', sa.Text(), nullable=True),
    sa.Column('display_name', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('avatar_cid', sa.Text(), nullable=True),
    sa.Column('banner_cid', sa.Text(), nullable=True),
    sa.Column('followers_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('following_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('posts_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('is_cannect_user', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('member_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('account_status', sa.Text(), nullable=True),
    sa.Column('indexed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('did', name=op.f('pk_profiles'))
    )
    op.create_index('idx_profiles_handle', 'profiles', ['handle'], unique=True, postgresql_where=sa.text('handle IS NOT NULL'))
    op.create_index('idx_profiles_members', 'profiles', ['did'], unique=False, postgresql_where=sa.text('is_cannect_user'))
    op.create_table('push_subscriptions',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('user_did', sa.Text(), nullable=False),
    sa.Column('endpoint', sa.Text(), nullable=False),
    sa.Column('p256dh', sa.Text(), nullable=False),
    sa.Column('auth', sa.Text(), nullable=False),
    sa.Column('user_agent', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_push_subscriptions')),
    sa.UniqueConstraint('endpoint', name=op.f('uq_push_subscriptions_endpoint'))
    )
    op.create_index('idx_push_subs_user', 'push_subscriptions', ['user_did'], unique=False)
    op.create_table('reposts',
    sa.Column('uri', sa.Text(), nullable=False),
    sa.Column('actor_did', sa.Text(), nullable=False),
    sa.Column('subject_uri', sa.Text(), nullable=False),
    sa.Column('subject_cid', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('uri', name=op.f('pk_reposts'))
    )
    op.create_index('idx_reposts_actor', 'reposts', ['actor_did', sa.literal_column('created_at DESC')], unique=False)
    op.create_index('idx_reposts_subject', 'reposts', ['subject_uri', 'actor_did'], unique=False)
    op.create_table('strains',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('normalized_name', sa.Text(), nullable=False),
    sa.Column('aliases', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('strain_type', sa.Text(), nullable=True),
    sa.Column('mention_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('avg_sentiment', sa.Numeric(precision=5, scale=2), nullable=True),
    sa.Column('common_effects', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("strain_type IN ('indica','sativa','hybrid','unknown')", name=op.f('ck_strains_strain_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_strains')),
    sa.UniqueConstraint('name', name=op.f('uq_strains_name'))
    )
    op.create_index('idx_strains_normalized', 'strains', ['normalized_name'], unique=False)
    op.create_table('time_series_aggregates',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('period_type', sa.Text(), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('period_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('total_posts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('unique_authors', sa.Integer(), server_default='0', nullable=False),
    sa.Column('posts_with_media', sa.Integer(), server_default='0', nullable=False),
    sa.Column('positive_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('negative_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('neutral_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('avg_sentiment_score', sa.Numeric(precision=5, scale=2), nullable=True),
    sa.Column('consumer_type_dist', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('product_dist', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('effects_dist', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('avg_purchase_intent', sa.Numeric(precision=5, scale=2), nullable=True),
    sa.Column('high_intent_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('top_strains', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('top_brands', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('top_frustrations', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('top_emotions', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('computed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("period_type IN ('hour','day','week','month')", name=op.f('ck_time_series_aggregates_period_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_time_series_aggregates')),
    sa.UniqueConstraint('period_type', 'period_start', name='uq_time_series_aggregates_period')
    )
    op.create_index('idx_timeseries_period', 'time_series_aggregates', ['period_type', sa.literal_column('period_start DESC')], unique=False)
    op.create_table('user_follow_state',
    sa.Column('user_did', sa.Text(), nullable=False),
    sa.Column('target_did', sa.Text(), nullable=False),
    sa.Column('following', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('follow_uri', sa.Text(), nullable=True),
    sa.Column('followed_by', sa.Boolean(), server_default='false', nullable=False),
    sa.PrimaryKeyConstraint('user_did', 'target_did', name=op.f('pk_user_follow_state'))
    )
    op.create_table('user_post_state',
    sa.Column('user_did', sa.Text(), nullable=False),
    sa.Column('post_uri', sa.Text(), nullable=False),
    sa.Column('liked', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('like_uri', sa.Text(), nullable=True),
    sa.Column('reposted', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('repost_uri', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('user_did', 'post_uri', name=op.f('pk_user_post_state'))
    )
    op.create_table('user_profiles',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('author_did', sa.Text(), nullable=False),
    sa.Column('author_handle', sa.Text(), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('posts_analyzed', sa.Integer(), server_default='0', nullable=False),
    sa.Column('primary_consumer_type', sa.Text(), nullable=True),
    sa.Column('secondary_consumer_type', sa.Text(), nullable=True),
    sa.Column('experience_level', sa.Text(), nullable=True),
    sa.Column('preferred_products', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('preferred_effects', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('typical_occasions', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('lifestyle_tags', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('avg_sentiment', sa.Numeric(precision=5, scale=2), nullable=True),
    sa.Column('posting_frequency', sa.Text(), nullable=True),
    sa.Column('typical_time_of_day', sa.Text(), nullable=True),
    sa.Column('purchase_frequency', sa.Text(), nullable=True),
    sa.Column('estimated_monthly_spend', sa.Text(), nullable=True),
    sa.Column('frustrations', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('likely_region', sa.Text(), nullable=True),
    sa.Column('legal_market', sa.Boolean(), nullable=True),
    sa.Column('dispensary_target_score', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('wellness_brand_target_score', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('premium_product_target_score', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('accessory_target_score', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('profile_updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('stats_json', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_profiles')),
    sa.UniqueConstraint('author_did', name=op.f('uq_user_profiles_author_did'))
    )
    op.create_index('idx_user_profiles_consumer_type', 'user_profiles', ['primary_consumer_type'], unique=False)
    op.create_index('idx_user_profiles_dispensary_score', 'user_profiles', [sa.literal_column('dispensary_target_score DESC')], unique=False)
    op.create_index('idx_user_profiles_experience', 'user_profiles', ['experience_level'], unique=False)
    op.create_index('idx_user_profiles_region', 'user_profiles', ['likely_region'], unique=False)
    op.create_table('api_usage',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=True),
    sa.Column('endpoint', sa.Text(), nullable=False),
    sa.Column('method', sa.Text(), nullable=False),
    sa.Column('status_code', sa.SmallInteger(), nullable=True),
    sa.Column('response_time_ms', sa.Integer(), nullable=True),
    sa.Column('called_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['api_clients.id'], name=op.f('fk_api_usage_client_id_api_clients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_usage'))
    )
    op.create_index('idx_api_usage_client', 'api_usage', ['client_id', sa.literal_column('called_at DESC')], unique=False)
    op.create_table('post_classifications',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('post_id', sa.BigInteger(), nullable=False),
    sa.Column('classified_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('model_version', sa.Text(), nullable=False),
    sa.Column('confidence', sa.SmallInteger(), nullable=True),
    sa.Column('processing_ms', sa.Integer(), nullable=True),
    sa.Column('experience_level', sa.Text(), nullable=True),
    sa.Column('consumer_type', sa.Text(), nullable=True),
    sa.Column('lifestyle_tags', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('occasion', sa.Text(), nullable=True),
    sa.Column('setting', sa.Text(), nullable=True),
    sa.Column('mood_before', sa.Text(), nullable=True),
    sa.Column('mood_after', sa.Text(), nullable=True),
    sa.Column('time_of_day', sa.Text(), nullable=True),
    sa.Column('is_ritual', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('intent_type', sa.Text(), nullable=True),
    sa.Column('purchase_intent', sa.SmallInteger(), nullable=True),
    sa.Column('purchase_stage', sa.Text(), nullable=True),
    sa.Column('product_category', sa.Text(), nullable=True),
    sa.Column('effects_mentioned', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('effects_desired', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('quality_perception', sa.Text(), nullable=True),
    sa.Column('dosage_pattern', sa.Text(), nullable=True),
    sa.Column('post_type', sa.Text(), nullable=True),
    sa.Column('media_type', sa.Text(), nullable=True),
    sa.Column('sentiment', sa.Text(), nullable=True),
    sa.Column('sentiment_score', sa.SmallInteger(), nullable=True),
    sa.Column('emotions', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('brand_mentioned', sa.Text(), nullable=True),
    sa.Column('strain_mentioned', sa.Text(), nullable=True),
    sa.Column('dispensary_mentioned', sa.Text(), nullable=True),
    sa.Column('price_mentioned', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('price_sentiment', sa.Text(), nullable=True),
    sa.Column('frustrations', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('region_hint', sa.Text(), nullable=True),
    sa.Column('legal_context', sa.Text(), nullable=True),
    sa.Column('data_richness', sa.SmallInteger(), nullable=True),
    sa.Column('business_value', sa.Text(), nullable=True),
    sa.Column('audience_segments', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.CheckConstraint("business_value IN ('high','medium','low')", name=op.f('ck_post_classifications_business_value')),
    sa.CheckConstraint("consumer_type IN ('wellness','recreational','medical','social','connoisseur','spiritual','unknown')", name=op.f('ck_post_classifications_consumer_type')),
    sa.CheckConstraint("dosage_pattern IN ('microdose','light','moderate','heavy','unknown')", name=op.f('ck_post_classifications_dosage_pattern')),
    sa.CheckConstraint("experience_level IN ('curious','newbie','casual','regular','daily','expert','unknown')", name=op.f('ck_post_classifications_experience_level')),
    sa.CheckConstraint("intent_type IN ('sharing','asking','recommending','complaining','celebrating','informing','venting','unknown')", name=op.f('ck_post_classifications_intent_type')),
    sa.CheckConstraint("legal_context IN ('legal','medical_only','illegal','unknown')", name=op.f('ck_post_classifications_legal_context')),
    sa.CheckConstraint("post_type IN ('experience','review','question','recommendation','announcement','meme','photo','vent','celebration','education','news','other')", name=op.f('ck_post_classifications_post_type')),
    sa.CheckConstraint("price_sentiment IN ('fair','expensive','cheap','deal')", name=op.f('ck_post_classifications_price_sentiment')),
    sa.CheckConstraint("purchase_stage IN ('unaware','considering','shopping','post_purchase','loyal','unknown')", name=op.f('ck_post_classifications_purchase_stage')),
    sa.CheckConstraint("quality_perception IN ('premium','good','average','poor','unknown')", name=op.f('ck_post_classifications_quality_perception')),
    sa.CheckConstraint("sentiment IN ('positive','negative','neutral','mixed')", name=op.f('ck_post_classifications_sentiment')),
    sa.CheckConstraint("time_of_day IN ('morning','afternoon','evening','night','late_night','unknown')", name=op.f('ck_post_classifications_time_of_day')),
    sa.CheckConstraint('confidence BETWEEN 0 AND 100', name=op.f('ck_post_classifications_confidence')),
    sa.CheckConstraint('data_richness BETWEEN 1 AND 10', name=op.f('ck_post_classifications_data_richness')),
    sa.CheckConstraint('purchase_intent BETWEEN 0 AND 100', name=op.f('ck_post_classifications_purchase_intent')),
    sa.CheckConstraint('sentiment_score BETWEEN -100 AND 100', name=op.f('ck_post_classifications_sentiment_score')),
    sa.ForeignKeyConstraint(['post_id'], ['posts.id'], name=op.f('fk_post_classifications_post_id_posts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_post_classifications')),
    sa.UniqueConstraint('post_id', 'model_version', name='uq_post_classifications_post_model')
    )
    op.create_index('idx_class_brand', 'post_classifications', ['brand_mentioned'], unique=False, postgresql_where=sa.text('brand_mentioned IS NOT NULL'))
    op.create_index('idx_class_consumer_type', 'post_classifications', ['consumer_type'], unique=False)
    op.create_index('idx_class_effects', 'post_classifications', ['effects_mentioned'], unique=False, postgresql_using='gin')
    op.create_index('idx_class_experience', 'post_classifications', ['experience_level'], unique=False)
    op.create_index('idx_class_lifestyle', 'post_classifications', ['lifestyle_tags'], unique=False, postgresql_using='gin')
    op.create_index('idx_class_post', 'post_classifications', ['post_id'], unique=False)
    op.create_index('idx_class_product', 'post_classifications', ['product_category'], unique=False)
    op.create_index('idx_class_purchase_intent', 'post_classifications', [sa.literal_column('purchase_intent DESC')], unique=False, postgresql_where=sa.text('purchase_intent >= 70'))
    op.create_index('idx_class_sentiment', 'post_classifications', ['sentiment'], unique=False)
    op.create_index('idx_class_strain', 'post_classifications', ['strain_mentioned'], unique=False, postgresql_where=sa.text('strain_mentioned IS NOT NULL'))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('idx_class_strain', table_name='post_classifications', postgresql_where=sa.text('strain_mentioned IS NOT NULL'))
    op.drop_index('idx_class_sentiment', table_name='post_classifications')
    op.drop_index('idx_class_purchase_intent', table_name='post_classifications', postgresql_where=sa.text('purchase_intent >= 70'))
    op.drop_index('idx_class_product', table_name='post_classifications')
    op.drop_index('idx_class_post', table_name='post_classifications')
    op.drop_index('idx_class_lifestyle', table_name='post_classifications', postgresql_using='gin')
    op.drop_index('idx_class_experience', table_name='post_classifications')
    op.drop_index('idx_class_effects', table_name='post_classifications', postgresql_using='gin')
    op.drop_index('idx_class_consumer_type', table_name='post_classifications')
    op.drop_index('idx_class_brand', table_name='post_classifications', postgresql_where=sa.text('brand_mentioned IS NOT NULL'))
    op.drop_table('post_classifications')
    op.drop_index('idx_api_usage_client', table_name='api_usage')
    op.drop_table('api_usage')
    op.drop_index('idx_user_profiles_region', table_name='user_profiles')
    op.drop_index('idx_user_profiles_experience', table_name='user_profiles')
    op.drop_index('idx_user_profiles_dispensary_score', table_name='user_profiles')
    op.drop_index('idx_user_profiles_consumer_type', table_name='user_profiles')
    op.drop_table('user_profiles')
    op.drop_table('user_post_state')
    op.drop_table('user_follow_state')
    op.drop_index('idx_timeseries_period', table_name='time_series_aggregates')
    op.drop_table('time_series_aggregates')
    op.drop_index('idx_strains_normalized', table_name='strains')
    op.drop_table('strains')
    op.drop_index('idx_reposts_subject', table_name='reposts')
    op.drop_index('idx_reposts_actor', table_name='reposts')
    op.drop_table('reposts')
    op.drop_index('idx_push_subs_user', table_name='push_subscriptions')
    op.drop_table('push_subscriptions')
    op.drop_index('idx_profiles_members', table_name='profiles', postgresql_where=sa.text('is_cannect_user'))
    op.drop_index('idx_profiles_handle', table_name='profiles', postgresql_where=sa.text('handle IS NOT NULL'))
    op.drop_table('profiles')
    op.drop_index('idx_posts_unprocessed', table_name='posts', postgresql_where=sa.text('processed_at IS NULL'))
    op.drop_index('idx_posts_text_search', table_name='posts', postgresql_using='gin')
    op.drop_index('idx_posts_reply_parent', table_name='posts', postgresql_where=sa.text('reply_parent_uri IS NOT NULL'))
    op.drop_index('idx_posts_indexed', table_name='posts')
    op.drop_index('idx_posts_date', table_name='posts')
    op.drop_index('idx_posts_created', table_name='posts')
    op.drop_index('idx_posts_cannect', table_name='posts', postgresql_where=sa.text('is_cannect_user'))
    op.drop_index('idx_posts_cannabis', table_name='posts', postgresql_where=sa.text('has_cannabis_hashtag'))
    op.drop_index('idx_posts_author', table_name='posts')
    op.drop_table('posts')
    op.drop_index('idx_notifications_unread', table_name='notifications', postgresql_where=sa.text('NOT read'))
    op.drop_index('idx_notifications_recipient', table_name='notifications')
    op.drop_index('idx_notifications_actor', table_name='notifications')
    op.drop_table('notifications')
    op.drop_index('idx_likes_subject', table_name='likes')
    op.drop_index('idx_likes_actor', table_name='likes')
    op.drop_table('likes')
    op.drop_table('ingest_state')
    op.drop_table('ingest_recent')
    op.drop_table('ingest_pending')
    op.drop_index('idx_follows_following', table_name='follows')
    op.drop_index('idx_follows_follower', table_name='follows')
    op.drop_table('follows')
    op.drop_index('idx_brands_normalized', table_name='brands')
    op.drop_table('brands')
    op.drop_table('api_clients')
