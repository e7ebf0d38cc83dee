"""Scheduled email reports for B2B clients (queue ``reports``, tasks/reports.py).

periods (which day or week a report covers and when it is due), content (the numbers, read
through the same service functions as ``/api/v1``), charts (PNG), compose (the email: HTML,
text, inline charts, CSV), mailer (SMTP), delivery (idempotent sending and the log),
subscriptions (a client's report settings).
"""
