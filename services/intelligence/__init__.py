"""Consumer intelligence derived from ``post_classifications`` (docs/intelligence.md).

One module per concern, each a set of plain functions on a session with set-based SQL:
``profiles`` (user_profiles and their B2B target scores), ``entities`` (brand and strain
statistics), ``timeseries`` (time_series_aggregates), ``views`` (materialized views),
``trends`` (rising hashtags, strains, brands, effects and their posts), ``metrics``
(engagement snapshots), ``opportunities`` (opportunity scores), ``questions`` (the seed's seven
time-analysis questions) and ``runs`` (when each job last ran, for ``cannect status``).
"""
