"""SQLAlchemy 2.0 tables: the single schema of the app and the intelligence product."""

from .backfill import BackfillChunk, BackfillJob, RecordTombstone
from .b2b import ApiClient, ApiUsage
from .base import Base
from .ingest import IngestDeadLetter, IngestPending, IngestRecent, IngestState
from .insights import (IntelligenceDirtyAuthor, IntelligenceRun, OpportunitySample, OpportunityScore,
                       PostMetricsHistory, Trend, TrendSource)
from .intelligence import Brand, LlmCall, PostClassification, Strain, TimeSeriesAggregate, UserProfile
from .notifications import Notification, NotificationPreference, PushSubscription
from .posts import Post
from .reports import ReportDelivery
from .sessions import AppSession, PdsSession
from .social import Follow, Like, Profile, Repost, UserFollowState, UserPostState
from .webhooks import WebhookDelivery, WebhookEndpoint

metadata = Base.metadata

__all__ = [
    "AppSession", "PdsSession", "BackfillChunk", "BackfillJob", "RecordTombstone",
    "ApiClient", "ApiUsage", "Base", "Brand", "Follow", "IngestDeadLetter", "IngestPending", "IngestRecent", "IngestState", "Like", "LlmCall",
    "Notification", "NotificationPreference", "Post", "PostClassification", "Profile", "PushSubscription", "Repost", "Strain",
    "TimeSeriesAggregate", "UserFollowState", "UserPostState", "UserProfile", "metadata",
    "IntelligenceDirtyAuthor", "IntelligenceRun", "OpportunitySample", "OpportunityScore", "PostMetricsHistory",
    "Trend", "TrendSource",
    "WebhookDelivery", "WebhookEndpoint",
    "ReportDelivery",
]
