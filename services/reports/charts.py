"""The report's charts as PNG images (matplotlib, Agg backend: no display; each chart its
own Figure, pyplot's global state never touched). matplotlib does not promise thread safety
(font and text caches are shared), so a process draws one report's charts at a time
(``_drawing``); a report's four charts take well under a second.

Labels come from posts (hashtags, brands): matplotlib would read ``$...$`` in them as math,
so they are drawn with math parsing off, and cut to ``LABEL_CHARS``.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)

logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

_drawing = threading.Lock()
LABEL_CHARS = 28
DPI = 110
COLORS = {"posts": "#2f7d4a", "high_intent": "#d9822b", "positive": "#2f9e5b", "neutral": "#9aa5b1",
          "negative": "#d64545", "demand": "#2f7d4a", "unmet_need": "#d9822b", "openness": "#4a78c2"}


def _label(value: str) -> str:
    value = " ".join(str(value).split())
    return value if len(value) <= LABEL_CHARS else value[:LABEL_CHARS - 1] + "…"


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # glyphs missing from the font (emoji in a hashtag) draw as boxes
        figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _figure(height: float = 2.6) -> tuple[Figure, object]:
    figure = Figure(figsize=(6.4, height))
    axes = figure.subplots()
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _yticklabels(axes, labels: list[str]) -> None:
    axes.set_yticks(range(len(labels)))
    for tick in axes.set_yticklabels([_label(v) for v in labels]):
        tick.set_parse_math(False)
    axes.invert_yaxis()


def activity(points: list[dict], hourly: bool) -> bytes:
    """Posts per hour (daily report) or per day (weekly), high-intent posts over them."""
    figure, axes = _figure()
    labels = [p["start"][11:13] if hourly else p["start"][5:10] for p in points]
    xs = range(len(points))
    axes.bar(xs, [p["posts"] for p in points], color=COLORS["posts"], label="posts")
    axes.bar(xs, [p["high_intent_posts"] for p in points], color=COLORS["high_intent"], label="high intent")
    axes.set_xticks(list(xs), labels, fontsize=7 if hourly else 8)
    axes.set_xlabel("hour (UTC)" if hourly else "day (UTC)")
    axes.legend(frameon=False, fontsize=8, ncols=2, loc="lower left", bbox_to_anchor=(0, 1.0))
    if not points:
        axes.text(0.5, 0.5, "no posts in this period", ha="center", va="center", transform=axes.transAxes)
    return _png(figure)


def sentiment(overview: dict) -> bytes:
    """Positive, neutral and negative posts as one stacked bar."""
    figure, axes = _figure(1.3)
    left = 0
    for name in ("positive", "neutral", "negative"):
        value = overview[f"{name}_posts"]
        axes.barh([0], [value], left=left, color=COLORS[name], label=f"{name} {value:,}")
        left += value
    axes.set_yticks([])
    axes.legend(frameon=False, fontsize=8, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return _png(figure)


def trends(rows: list[dict]) -> bytes:
    """Velocity of the fastest-growing trends (smoothed growth over the previous window)."""
    figure, axes = _figure(0.45 * max(len(rows), 2) + 0.8)
    axes.barh(range(len(rows)), [t["velocity"] for t in rows], color=COLORS["posts"])
    _yticklabels(axes, [f"{t['kind']}: {t['name']}" for t in rows])
    axes.axvline(0, color="#555", linewidth=0.8)
    axes.set_xlabel("velocity")
    return _png(figure)


def opportunities(rows: list[dict]) -> bytes:
    """Opportunity scores, split into their weighted parts (which add up to the score)."""
    figure, axes = _figure(0.45 * max(len(rows), 2) + 0.8)
    left = [0.0] * len(rows)
    for part in ("demand", "unmet_need", "openness"):
        values = [float(o["contributions"].get(part) or 0) for o in rows]
        axes.barh(range(len(rows)), values, left=left, color=COLORS[part], label=part.replace("_", " "))
        left = [a + b for a, b in zip(left, values)]
    _yticklabels(axes, [o["subject"] for o in rows])
    axes.set_xlim(0, 100)
    axes.set_xlabel("score (0-100)")
    axes.legend(frameon=False, fontsize=8, ncols=3, loc="lower left", bbox_to_anchor=(0, 1.0))
    return _png(figure)


def draw(report: dict) -> dict[str, bytes]:
    """Chart name -> PNG, for the sections the report has."""
    images = {}
    with _drawing:
        if report["overview"] is not None:
            images["activity"] = activity(report["activity"], report["period"].frequency == "daily")
            images["sentiment"] = sentiment(report["overview"])
        if report["trends"]:
            images["trends"] = trends(report["trends"])
        if report["opportunities"]:
            images["opportunities"] = opportunities(report["opportunities"])
    return images
