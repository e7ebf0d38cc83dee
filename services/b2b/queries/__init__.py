"""What ``/api/v1`` answers: plain read functions over the intelligence tables and views.

Modules: ``market`` (segments, intents, trends, opportunities), ``entities`` (brands, strains,
time series), ``insights`` (the seven questions), ``audience`` (profiles), ``search`` (posts by
full text and classification). The numbers come from ``services/intelligence`` (its tables,
views and functions: docs/intelligence.md); ``cache`` keeps answers until the job behind them
runs again, ``posts`` looks up the posts an answer names at every request (a deleted post is
left out even when the aggregate naming it is older), ``cursors`` signs page cursors.
"""
