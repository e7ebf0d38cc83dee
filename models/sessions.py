"""Login sessions: the app's own refresh tokens and the user's PDS tokens (encrypted at rest)."""

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_now


class PdsSession(Base):
    """The user's session on their PDS, used to write records for them."""

    __tablename__ = "pds_sessions"

    did: Mapped[str] = mapped_column(Text, primary_key=True)
    pds_url: Mapped[str] = mapped_column(Text)
    handle: Mapped[str | None] = mapped_column(Text)
    # Fernet tokens (services/crypto.py): never stored or logged in clear.
    access_jwt: Mapped[bytes] = mapped_column(LargeBinary)
    refresh_jwt: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = created_now()
    updated_at: Mapped[datetime] = created_now()


class AppSession(Base):
    """One signed-in device: its refresh token is stored hashed, and can be revoked.

    The hash of the token the last refresh replaced is kept too: that token coming back means
    two parties hold the session (one of them stole it), so the whole session is revoked.
    The session ends ``expires_at`` (sliding with each refresh, never past its absolute
    lifetime, ``SESSION_MAX_AGE_DAYS`` after ``created_at``).
    """

    __tablename__ = "app_sessions"

    id: Mapped[str] = mapped_column(Uuid(as_uuid=False), primary_key=True)
    did: Mapped[str] = mapped_column(ForeignKey("pds_sessions.did", ondelete="CASCADE"))
    refresh_token_hash: Mapped[str] = mapped_column(Text, unique=True)
    previous_refresh_token_hash: Mapped[str | None] = mapped_column(Text, unique=True)
    user_agent: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_now()
    last_used_at: Mapped[datetime] = created_now()
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index("idx_app_sessions_did", "did", postgresql_where=text("revoked_at IS NULL")),)
