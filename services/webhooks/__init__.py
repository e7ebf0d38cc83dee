"""B2B webhooks: clients' endpoints, the events they subscribe to, signed delivery with retries.

- ``signing``: Standard Webhooks signatures (``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature``) with ``whsec_`` secrets.
- ``endpoints``: registering, changing, rotating, re-enabling; URL checks (https, public
  addresses, no credentials) through ``services/outbound.py``.
- ``events``: ``emit`` and the four producers (high_intent_post, brand_mention,
  sentiment_shift, trend_spike); each returns the ids of the deliveries it queued, for the
  caller to enqueue after its commit.
- ``delivery``: one attempt of one delivery (claim, sign, POST, settle), the retry schedule and
  the rule that disables an endpoint failing for too long.

Plain functions on a session; ``tasks/webhooks.py`` runs them on the ``webhooks`` queue.
"""
