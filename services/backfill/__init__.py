"""Member onboarding: the past of a new member's Following feed, fetched and indexed.

When an account becomes a member (sign-in, ``cannect members add``), a ``member`` job reads
its follows from its repository (``com.atproto.repo.listRecords`` of ``app.bsky.graph.follow``
on the PDS its DID document names), then the recent posts of the member and of every account
it follows (``BACKFILL_WINDOW_DAYS``, at most ``BACKFILL_MAX_POSTS_PER_ACCOUNT`` each) from
the AppView's ``getAuthorFeed`` (or each account's PDS). When a member follows an account no
member followed before, an ``account`` job fetches that account's recent posts.

Everything fetched goes through the edge checks and the indexing rules of streamed events
(``docs/indexing-rules.md``, "Backfilled records"). Jobs and their resumable chunks live in
PostgreSQL (``models/backfill.py``); the ``backfill`` queue (``tasks/backfill.py``) carries one
message per page.

- ``jobs``: creating, starting and resuming jobs, progress for the member;
- ``pages``: fetch one page and apply it under the ingest lock;
- ``sources``: listRecords and getAuthorFeed answers in one shape;
- ``fetch``: guarded XRPC GETs with retries and per-host limits.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from .jobs import (ACCOUNT, MEMBER, PageRequest, member_progress, pending_pages, progress, request_job,
                   start_job)
from .pages import PageOutcome, PageSettings, run_page

__all__ = ["ACCOUNT", "MEMBER", "PageOutcome", "PageRequest", "PageSettings", "member_progress", "pending_pages",
           "progress", "request_account_backfill", "request_member_backfill", "run_page", "start_job"]


def request_member_backfill(session: Session, did: str) -> int | None:
    """A new (or returning) member's onboarding job; None when one is already open."""
    return request_job(session, MEMBER, did)


def request_account_backfill(session: Session, account: str, member: str) -> int | None:
    """The recent posts of ``account``, which ``member`` just followed; None when already open."""
    return request_job(session, ACCOUNT, account, {"member": member})
