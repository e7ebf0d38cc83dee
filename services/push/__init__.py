"""Web push: members' subscriptions, VAPID keys, payloads, delivery and its counters.

- ``subscriptions``: subscribe / unsubscribe (validated), :func:`fan_out` for the notify
  step, broadcast pages;
- ``delivery``: one push from the database to the push service and what its answer means;
- ``payload``: the compact JSON the app's service worker shows;
- ``keys``: VAPID and subscription keys; ``stats``: counters in Redis.

The ``push`` queue's actors are in ``tasks/push.py``; the endpoints in ``app/api/push.py``.
"""
