"""Domain layer: plain functions that take a SQLAlchemy session.

Both ``app/`` (HTTP) and ``tasks/`` (actors, listener, scheduler) call into here; nothing
here imports Flask or Dramatiq.
"""
