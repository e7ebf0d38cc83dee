"""A fake OpenAI-compatible chat completions API: a real HTTP server on 127.0.0.1.

``POST /v1/chat/completions`` (and ``/chat/completions``, DeepSeek's path) checks the request
as a provider would (model, messages, JSON mode needs the word "json" in the prompt), reads the
posts of the user message (``{"posts": [{"id", "text", ...}]}``, as services/classify/prompt.py
writes it) and answers ``{"results": [...]}`` with one classification per post, derived
deterministically from keywords of the text (:func:`classify_text`), after ``delay`` seconds.

``usage`` is reported both the DeepSeek way (``prompt_cache_hit_tokens`` /
``prompt_cache_miss_tokens``) and the OpenAI way (``prompt_tokens_details.cached_tokens``),
with about four characters a token; the system prompt's tokens are a cache hit when that exact
system prompt was seen before (providers cache prompt prefixes).

Tests script the next answers with :meth:`FakeLLM.script`, one entry per request:
``"ok"``, ``"invalid_json"``, ``"blank"``, ``"partial"`` (every second post left out),
``"bad_values"`` (out-of-range numbers, unknown enumerations, wrong types), ``"huge"``
(megabyte strings, thousands of tags), ``"junk"`` (non-objects, unknown / duplicate ids around
the real results), ``"length"`` (JSON cut off, finish_reason "length"), ``"content_filter"``,
``"timeout"`` (no answer for ``stall`` seconds), ``"disconnect"`` (connection closed, no
answer), an HTTP status (``429``, ``500``, ``401``, ...; 429 and 503 carry ``Retry-After: 0``),
``{"status": 429, "retry_after": "3"}``, ``{"content": "<raw answer text>"}`` or
``{"body": "<raw response body>"}``.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from .server import LocalHttpServer

PATHS = ("/v1/chat/completions", "/chat/completions")
MAX_BODY = 4 * 1024 * 1024

_CANNABIS = re.compile(r"\b(weed|cannabis|thc|cbd|strains?|edibles?|gumm(y|ies)|vape|carts?|dabs?|joints?|blunts?|"
                       r"buds?|indica|sativa|kush|dispensar(y|ies)|420|pre-?rolls?|stoned|high af|tokes?|"
                       r"blue dream|gsc|flower)\b")
_PRODUCTS = (("edible", r"edibles?|gumm(y|ies)|brownies?|cookies? with"), ("vape", r"vapes?|carts?|vape pen"),
             ("concentrate", r"dabs?|wax|shatter|rosin"), ("pre_roll", r"pre-?rolls?|joints?"),
             ("tincture", r"tinctures?|drops"), ("flower", r"flower|buds?|nugs?|eighth|strains?|blue dream|gsc"))
_POSITIVE = re.compile(r"\b(love|great|amazing|best|happy|awesome|good|perfect|chill)\b")
_NEGATIVE = re.compile(r"\b(hate|awful|bad|overpriced|worst|terrible|anxious|paranoid|sucks?)\b")
_EFFECTS = (("sleepy", r"sleep(y)?"), ("relaxed", r"relax(ed|ing)?"), ("anxious", r"anxious|paranoid"),
            ("creative", r"creative"), ("hungry", r"munchies|hungry"))
_STRAINS = (("Blue Dream", r"blue dream"), ("Girl Scout Cookies", r"\bgsc\b|girl scout cookies"))


def _words(pattern: str, text: str) -> bool:
    return re.search(rf"\b({pattern})\b", text) is not None


def classify_text(text: str) -> dict[str, Any]:
    """What this fake 'model' answers for a text: keywords in, the schema's fields out."""
    lower = text.lower()
    positive, negative = bool(_POSITIVE.search(lower)), bool(_NEGATIVE.search(lower))
    sentiment = "mixed" if positive and negative else "positive" if positive else \
        "negative" if negative else "neutral"
    question = "?" in text
    answer: dict[str, Any] = {
        "cannabis_related": bool(_CANNABIS.search(lower)), "confidence": 90,
        "post_type": "question" if question else "experience", "sentiment": sentiment,
        "sentiment_score": {"positive": 60, "negative": -60}.get(sentiment, 0),
    }
    if not answer["cannabis_related"]:
        answer["product_category"] = "none"
        return answer
    answer["product_category"] = next((name for name, words in _PRODUCTS if _words(words, lower)), "unknown")
    answer["intent_type"] = "asking" if question else "sharing"
    answer["purchase_intent"] = 80 if _words(r"buy|buying|shopping|looking for|where can i", lower) else 10
    effects = [name for name, words in _EFFECTS if _words(words, lower)]
    if effects:
        answer["effects_mentioned"] = effects
    strain = next((name for name, words in _STRAINS if re.search(words, lower)), None)
    if strain:
        answer["strain_mentioned"] = strain
    if "$" in text or _words(r"price|prices|expensive|overpriced|cheap", lower):
        answer["price_mentioned"] = True
        answer["price_sentiment"] = "cheap" if _words("cheap", lower) else "expensive"
        answer["frustrations"] = ["price"] if negative else []
    answer["data_richness"] = min(10, 2 + len(effects) + (strain is not None) + len(lower) // 80)
    return answer


def _bad_values(number: Any) -> dict[str, Any]:
    return {"id": number, "cannabis_related": "yes", "confidence": "very", "post_type": "Vlog",
            "sentiment": "ecstatic", "sentiment_score": -999, "purchase_intent": 250, "data_richness": 11.5,
            "product_category": "Edibles!!", "time_of_day": "Late Night", "lifestyle_tags": "Outdoor Life",
            "effects_mentioned": [["nested"], {"x": 1}, "Sleepy", "sleepy", None, 7],
            "brand_mentioned": {"name": "Acme"}, "strain_mentioned": "  Blue\n\tDream  ", "is_ritual": "maybe",
            "price_mentioned": 1, "price_sentiment": "bargain", "region_hint": "null"}


def _huge(number: Any) -> dict[str, Any]:
    return {"id": number, "cannabis_related": True, "confidence": 1e308, "post_type": "review",
            "sentiment": "positive", "occasion": "x" * 1_000_000, "emotions": [f"emotion {i}" for i in range(5000)],
            "strain_mentioned": "Blue Dream " * 1000, "sentiment_score": -1e300, "data_richness": float("nan"),
            "purchase_intent": float("inf")}


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


@dataclass
class FakeRequest:
    """One request received, and how it was answered."""

    path: str
    body: dict
    system: str | None
    user: str | None
    posts: list[dict]
    behaviour: Any
    status: int


class FakeLLM:
    """The API. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(self, delay: float = 0.0, stall: float = 5.0):
        self.delay, self.stall = delay, stall
        self.max_concurrent = 0
        self._active = 0
        self._requests: list[FakeRequest] = []
        self._script: list[Any] = []
        self._seen_prefixes: set[str] = set()
        self._lock = threading.Lock()
        self._server = LocalHttpServer(_handler_for(self), "fake-llm", backlog=256)

    @property
    def base_url(self) -> str:
        return f"{self._server.url}/v1"

    @property
    def requests(self) -> list[FakeRequest]:
        with self._lock:
            return list(self._requests)

    def script(self, behaviours: list[Any]) -> None:
        """Answer the next requests this way, one entry each, then normally again."""
        with self._lock:
            self._script.extend(behaviours)

    def start(self) -> "FakeLLM":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "FakeLLM":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- one request ---------------------------------------------------------------------------

    def enter(self) -> None:
        with self._lock:
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)

    def leave(self) -> None:
        with self._lock:
            self._active -= 1

    def answer(self, path: str, raw: bytes) -> tuple[Any, int, dict, Any]:
        """(behaviour, status, headers, JSON body or raw text) for one request; records it."""
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError as exc:
            return self._record(path, {}, None, None, [], "malformed", 400, {}, _error(f"invalid JSON body: {exc}"))
        problem = _check(body)
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        system = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "system"), None)
        user = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
        posts = _posts_of(user)
        if problem:
            return self._record(path, body, system, user, posts, "rejected", 400, {}, _error(problem))
        with self._lock:
            behaviour = self._script.pop(0) if self._script else "ok"
        if isinstance(behaviour, int) or isinstance(behaviour, dict) and "status" in behaviour:
            status = behaviour if isinstance(behaviour, int) else behaviour["status"]
            retry_after = behaviour.get("retry_after") if isinstance(behaviour, dict) else \
                ("0" if status in (429, 503) else None)
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return self._record(path, body, system, user, posts, behaviour, status, headers,
                                _error(f"scripted {status}"))
        if behaviour in ("timeout", "disconnect"):
            return self._record(path, body, system, user, posts, behaviour, 0, {}, None)
        if isinstance(behaviour, dict) and "body" in behaviour:
            return self._record(path, body, system, user, posts, behaviour, 200, {}, behaviour["body"])
        content, finish = _content(behaviour, posts)
        with self._lock:  # only a request the model actually read fills the prefix cache
            cached = system is not None and system in self._seen_prefixes
            if system is not None:
                self._seen_prefixes.add(system)
        completion = {
            "id": f"chatcmpl-fake-{len(self._requests) + 1}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish,
                         "logprobs": None}],
            "usage": _usage(system or "", user or "", content or "", cached),
        }
        return self._record(path, body, system, user, posts, behaviour, 200, {}, completion)

    def _record(self, path, body, system, user, posts, behaviour, status, headers, reply):
        with self._lock:
            self._requests.append(FakeRequest(path, body, system, user, posts, behaviour, status))
        return behaviour, status, headers, reply


def _check(body: dict) -> str | None:
    """What a provider would refuse with 400."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model is required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
            and isinstance(m.get("content"), str) for m in messages):
        return "messages must be a non-empty list of {role, content}"
    if (body.get("response_format") or {}).get("type") == "json_object" and \
            not any("json" in m["content"].lower() for m in messages):
        return "Prompt must contain the word 'json' in some form to use 'response_format' of type 'json_object'."
    return None


def _posts_of(user: Any) -> list[dict]:
    try:
        posts = json.loads(user)["posts"]
    except (TypeError, ValueError, KeyError):
        return []
    return [p for p in posts if isinstance(p, dict)] if isinstance(posts, list) else []


def _content(behaviour: Any, posts: list[dict]) -> tuple[str, str]:
    """(message content, finish_reason) of a 200 answer."""
    def results(entries):
        return json.dumps({"results": entries})

    normal = [{"id": p.get("id"), **classify_text(str(p.get("text", "")))} for p in posts]
    if isinstance(behaviour, dict) and "content" in behaviour:
        return behaviour["content"], behaviour.get("finish_reason", "stop")
    if behaviour == "invalid_json":
        return '{"results": [{"id": 1, "sentiment": "positive",', "stop"
    if behaviour == "blank":
        return "", "stop"
    if behaviour == "partial":
        return results(normal[::2]), "stop"
    if behaviour == "bad_values":
        return results([_bad_values(p.get("id")) for p in posts]), "stop"
    if behaviour == "huge":
        return results([_huge(p.get("id")) for p in posts]), "stop"
    if behaviour == "junk":
        junk = ["not an object", 5, None, [1, 2], {"id": 999, **classify_text("weed")}, {"id": -1},
                {"id": "abc"}, {"id": True, "cannabis_related": True, "post_type": "meme", "sentiment": "mixed"},
                {"nested": {"deeper": [[[[{"id": 1}]]]]}}]
        first_duplicates = [{**entry, "sentiment": "negative", "post_type": "vent"} for entry in normal]
        return results(junk + normal + first_duplicates), "stop"
    if behaviour == "length":
        return results(normal)[: max(20, len(results(normal)) // 2)], "length"
    if behaviour == "content_filter":
        return "", "content_filter"
    return results(normal), "stop"


def _usage(system: str, user: str, content: str, cached: bool) -> dict:
    system_tokens, user_tokens = _tokens(system), _tokens(user)
    prompt = system_tokens + user_tokens + 8  # + chat template tokens
    hit = system_tokens if cached else 0
    return {"prompt_tokens": prompt, "completion_tokens": _tokens(content), "total_tokens": prompt + _tokens(content),
            "prompt_cache_hit_tokens": hit, "prompt_cache_miss_tokens": prompt - hit,
            "prompt_tokens_details": {"cached_tokens": hit}}


def _error(message: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "code": None}}


def _handler_for(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the openai client pools connections

        def setup(self):
            super().setup()  # headers and body leave in two writes: no Nagle wait between them
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self):
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit() or int(length) > MAX_BODY:
                return self._reply(413 if length and length.isdigit() else 411, {}, _error("bad length"))
            raw = self.rfile.read(int(length))
            if self.path.split("?")[0] not in PATHS:
                return self._reply(404, {}, _error(f"no route {self.path}"))
            fake.enter()
            try:
                behaviour, status, headers, reply = fake.answer(self.path, raw)
                if behaviour == "timeout":
                    time.sleep(fake.stall)
                if behaviour in ("timeout", "disconnect"):
                    return self._hang_up()
                time.sleep(fake.delay)
                self._reply(status, headers, reply)
            finally:
                fake.leave()

        def _reply(self, status: int, headers: dict, reply: Any):
            data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                self.close_connection = True

        def _hang_up(self):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    return Handler
