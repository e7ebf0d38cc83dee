"""The report as an email (stdlib ``EmailMessage``) and as a page to preview.

::

    multipart/mixed
      multipart/alternative
        text/plain                 report.txt
        multipart/related
          text/html                report.html, charts as <img src="cid:...">
          image/png ...            the charts (Content-ID)
      text/csv (attachment)        every number of the report, section,item,metric,value

Everything from posts (texts, hashtags, names) goes through Jinja's autoescape in the HTML;
post links are built here (https://bsky.app/...) from ids, never taken from text. CSV cells
that a spreadsheet would run as a formula get a leading apostrophe.
"""

from __future__ import annotations

import base64
import csv
import io
from email.message import EmailMessage
from email.utils import format_datetime

import jinja2

from . import charts
from .periods import Period

_env = jinja2.Environment(loader=jinja2.PackageLoader("services.reports", "templates"),
                          autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _number(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if digits else f"{value:,}"


def _text(value, limit: int = 280) -> str:
    """One line of a post's text: control characters out, at most ``limit`` characters."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in str(value or "")).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def post_link(post: dict) -> str | None:
    """``at://did/app.bsky.feed.post/rkey`` -> its bsky.app page (None for anything else)."""
    parts = str(post.get("uri") or "").removeprefix("at://").split("/")
    if len(parts) != 3 or parts[1] != "app.bsky.feed.post" or not parts[0].startswith("did:"):
        return None
    return f"https://bsky.app/profile/{parts[0]}/post/{parts[2]}"


_env.filters.update(number=_number, oneline=_text, post_link=post_link)


def subject(report: dict) -> str:
    period: Period = report["period"]
    kind = "Daily" if period.frequency == "daily" else "Weekly"
    return f"{kind} Cannect report, {period.label}"


def _safe_cell(value) -> str | int | float:
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def csv_rows(report: dict) -> list[tuple]:
    """Every number the report shows: (section, item, metric, value)."""
    rows: list[tuple] = []
    if report["overview"] is not None:
        rows += [("overview", "total", metric, value) for metric, value in report["overview"].items()]
        for point in report["activity"]:
            rows += [("activity", point["start"], "posts", point["posts"]),
                     ("activity", point["start"], "high_intent_posts", point["high_intent_posts"])]
    for t in report["trends"]:
        item = f"{t['kind']}:{t['name']}"
        rows += [("trends", item, "current_count", t["current_count"]),
                 ("trends", item, "previous_count", t["previous_count"]), ("trends", item, "velocity", t["velocity"])]
    for o in report["opportunities"]:
        rows += [("opportunities", o["subject"], metric, o[metric])
                 for metric in ("score", "demand_score", "unmet_need_score", "saturation_score")]
    if report["highlights"] is not None:
        rows.append(("high_intent", "total", "posts", report["highlights"]["total"]))
        rows += [("high_intent", product, "posts", n) for product, n in report["highlights"]["by_product"].items()]
    use = report["usage"]
    rows += [("usage", "total", "calls", use["calls"]), ("usage", "total", "errors", use["errors"])]
    for endpoint, counts in use["endpoints"].items():
        rows += [("usage", endpoint, "calls", counts["calls"]), ("usage", endpoint, "errors", counts["errors"])]
    rows += [("usage", "quota", "used", use["quota"]["used"]), ("usage", "quota", "limit", use["quota"]["limit"])]
    return rows


def csv_text(report: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(("section", "item", "metric", "value"))
    for section, item, metric, value in csv_rows(report):
        writer.writerow((section, _safe_cell(str(item)), metric, "" if value is None else value))
    return buffer.getvalue()


def csv_filename(report: dict) -> str:
    period: Period = report["period"]
    return f"cannect-{period.frequency}-report-{period.start:%Y-%m-%d}.csv"


def render_text(report: dict) -> str:
    return _env.get_template("report.txt").render(report=report, subject=subject(report))


def render_html(report: dict, image_src: dict[str, str]) -> str:
    return _env.get_template("report.html").render(report=report, subject=subject(report), images=image_src)


def build_message(report: dict, sender: str, recipients: list[str], message_id: str,
                  images: dict[str, bytes] | None = None) -> EmailMessage:
    """The email; ``images`` (chart name -> PNG) default to :func:`charts.draw`."""
    images = charts.draw(report) if images is None else images
    local, _, domain = message_id.strip("<>").rpartition("@")
    cids = {name: f"<chart-{name}.{local}@{domain}>" for name in images}  # the same on every attempt
    message = EmailMessage()
    message["Subject"] = subject(report)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(report["built_at"])
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    message.set_content(render_text(report))
    message.add_alternative(render_html(report, {name: f"cid:{cid[1:-1]}" for name, cid in cids.items()}),
                            subtype="html")
    html_part = message.get_payload()[1]
    for name, png in images.items():
        html_part.add_related(png, "image", "png", cid=cids[name], filename=f"{name}.png", disposition="inline")
    message.add_attachment(csv_text(report).encode(), maintype="text", subtype="csv", filename=csv_filename(report),
                           params={"charset": "utf-8"})
    return message


def preview_html(report: dict, images: dict[str, bytes] | None = None) -> str:
    """The HTML part with the charts inlined as data: URIs, to open in a browser."""
    images = charts.draw(report) if images is None else images
    return render_html(report, {name: "data:image/png;base64," + base64.b64encode(png).decode()
                                for name, png in images.items()})
