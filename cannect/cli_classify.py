"""``cannect classify``: texts in, classifications out, no database (``cannect backfill`` is in cli_backfill.py).

``classify`` is for operators tuning prompts and lexicons: each input line is a JSON object
with a ``text`` field (a line starting with ``{``) or plain text; each output line is the
classification as ``post_classifications`` columns, or ``{"line": N, "error": ...}`` for a
line that could not be read or classified (the exit status is then 1, after every line).
Blank lines are skipped.
"""

from __future__ import annotations

import sys

import click
import orjson

from .config import ConfigError, Settings, load_settings

#: Lines classified per classifier call (the LLM sends them as few requests).
CHUNK = 50


def _settings_without_services() -> Settings:
    """The configuration, with placeholders for DATABASE_URL / REDIS_URL when unset: ``classify``
    needs no database, and Redis only for the LLM."""
    import os

    return load_settings(Settings, database_url=os.environ.get("DATABASE_URL") or "postgresql://unused/unused",
                         redis_url=os.environ.get("REDIS_URL") or "redis://unused:6379/0")


def _build_classifier(offline: bool):
    import os

    from services.classify import ClassifierUnavailable, get_classifier

    if offline:  # no settings needed, but the operator's lexicons (the point of trying texts here)
        from services.classify.offline import OfflineClassifier

        return OfflineClassifier(lexicon_dir=os.environ.get("CLASSIFIER_LEXICON_DIR") or None)

    settings = _settings_without_services()
    if settings.classifier == "offline" or (settings.classifier == "auto" and not settings.deepseek_api_key):
        return get_classifier(settings)
    if not os.environ.get("REDIS_URL"):
        raise ClassifierUnavailable("the LLM classifier needs REDIS_URL (its concurrency limit and daily budget "
                                    "are shared there); or use --offline")
    import redis

    # Calls are not logged to llm_calls (no database here), only counted against today's budget.
    return get_classifier(settings, redis.Redis.from_url(settings.redis_url, socket_timeout=5), lambda row: None)


def _parse_line(number: int, raw: bytes):
    """(PostText, None) or (None, error object) for one input line; None for a blank line."""
    from services.classify.schema import PostText

    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, {"line": number, "error": f"not UTF-8 ({exc.reason} at byte {exc.start})"}
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    if not line.lstrip().startswith("{"):
        return PostText(key=str(number), text=line), None
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return None, {"line": number, "error": f"invalid JSON: {exc}"}
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return None, {"line": number, "error": "a JSON line needs a \"text\" string field"}
    langs = value.get("langs")
    langs = tuple(x for x in langs if isinstance(x, str)) if isinstance(langs, list) else ()
    return PostText(key=str(number), text=value["text"], langs=langs, has_media=value.get("has_media") is True), None


@click.command("classify")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False), help="Input (default: stdin).")
@click.option("--offline", is_flag=True, help="Use the offline classifier whatever the configuration says.")
def classify(path, offline):
    """Classify texts (JSON lines with "text", or plain lines); print one JSON object per line."""
    from services.classify import ClassifierUnavailable
    from services.classify.lexicon import LexiconError
    from services.classify.schema import Classification, Failure

    try:
        classifier = _build_classifier(offline)
    except (ConfigError, ClassifierUnavailable, LexiconError) as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    stream = open(path, "rb") if path else sys.stdin.buffer
    failed = False
    pending: list[tuple[int, object]] = []      # (line number, PostText | error object), input order

    def flush():
        nonlocal failed
        texts = [item for _, item in pending if not isinstance(item, dict)]
        outcome = classifier.classify(texts) if texts else None
        results = iter(outcome.results if outcome else ())
        for number, item in pending:
            if isinstance(item, dict):
                out, failed = item, True
            else:
                result = next(results)
                if isinstance(result, Failure):
                    out, failed = {"line": number, "error": result.error}, True
                elif isinstance(result, Classification):
                    out = {**result.row(), "model_version": outcome.model_version,
                           "processing_ms": outcome.elapsed_ms // max(len(texts), 1)}
                else:
                    out, failed = {"line": number, "error": "the classifier returned nothing"}, True
            click.echo(orjson.dumps(out).decode())
        pending.clear()

    try:
        for number, raw in enumerate(stream, start=1):
            parsed = _parse_line(number, raw)
            if parsed is None:
                continue
            text, error = parsed
            pending.append((number, error if error is not None else text))
            if len(pending) >= CHUNK:
                flush()
        flush()
    finally:
        if path:
            stream.close()
    if failed:
        sys.exit(1)
