"""A small interpreter of lexicon schemas: check a record and keep only its known fields.

Each schema node's ``conform(value)`` returns the value as we keep it, or raises
:class:`Invalid`. Kept values are fresh objects holding only what the lexicon defines: unknown
fields are dropped at every level, a member of an open union whose ``$type`` we do not know
is left out (:data:`DROP`), and NUL characters are removed from free text (PostgreSQL's text
and JSONB cannot hold them). Everything else the lexicon forbids (wrong types, limits,
identifier syntax, missing required fields) raises. The limits are copied from the lexicon
JSON of ``bluesky-social/atproto`` (``lexicons/app/bsky/...``); see ``records.py``.

Hand-written rather than the SDK's pydantic models: those neither count graphemes nor strip
unknown fields, and validating with them alone was slower than this whole module.
"""

from __future__ import annotations

from typing import Callable

import regex

from services import atproto_syntax

GRAPHEME = regex.compile(r"\X")
_NUL = "\x00"


class Invalid(Exception):
    """A value breaks its lexicon; ``path`` names the field (outermost first)."""

    def __init__(self, problem: str, path: list | None = None):
        super().__init__(problem)
        self.problem = problem
        self.path = path if path is not None else []

    def at(self, step) -> "Invalid":
        self.path.insert(0, step)
        return self

    def describe(self) -> str:
        where = ".".join(str(step) for step in self.path)
        return f"{where}: {self.problem}" if where else self.problem


#: Returned for an open-union member of a type we do not know: the caller leaves it out.
DROP = object()


def graphemes(text: str) -> int:
    """User-perceived characters (Unicode extended grapheme clusters), as the lexicon counts."""
    return len(GRAPHEME.findall(text))


def check_length(text: str, max_bytes: int | None, max_graphemes: int | None) -> None:
    """Raise unless ``text`` fits the lexicon's ``maxLength`` (UTF-8 bytes) and ``maxGraphemes``."""
    length = len(text)  # code points: a lower bound of bytes, an upper bound of graphemes
    if max_bytes is not None and length * 4 > max_bytes and len(text.encode()) > max_bytes:
        raise Invalid(f"longer than {max_bytes} bytes")
    if max_graphemes is not None and length > max_graphemes and graphemes(text) > max_graphemes:
        raise Invalid(f"longer than {max_graphemes} graphemes")


class Text:
    """A free-text string: NULs removed, then the length limits checked."""

    __slots__ = ("max_bytes", "max_graphemes")

    def __init__(self, max_bytes: int | None = None, max_graphemes: int | None = None):
        self.max_bytes, self.max_graphemes = max_bytes, max_graphemes

    def conform(self, value):
        if type(value) is not str:
            raise Invalid("not a string")
        if _NUL in value:
            value = value.replace(_NUL, "")
        if self.max_bytes is not None or self.max_graphemes is not None:
            check_length(value, self.max_bytes, self.max_graphemes)
        return value


class Format:
    """An identifier string (did, at-uri, cid, uri, language, datetime): its syntax or nothing."""

    __slots__ = ("check", "name")

    def __init__(self, check: Callable[[object], bool], name: str):
        self.check, self.name = check, name

    def conform(self, value):
        if not self.check(value):
            raise Invalid(f"not a valid {self.name}")
        return value


class Integer:
    __slots__ = ("minimum", "maximum")

    def __init__(self, minimum: int | None = None, maximum: int | None = None):
        self.minimum, self.maximum = minimum, maximum

    def conform(self, value):
        if type(value) is not int:  # bool is an int subclass, JSON true is not an integer
            raise Invalid("not an integer")
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise Invalid("out of range")
        return value


class Boolean:
    __slots__ = ()

    def conform(self, value):
        if type(value) is not bool:
            raise Invalid("not a boolean")
        return value


class Array:
    __slots__ = ("item", "max_items")

    def __init__(self, item, max_items: int):
        self.item, self.max_items = item, max_items

    def conform(self, value):
        if type(value) is not list:
            raise Invalid("not an array")
        if len(value) > self.max_items:
            raise Invalid(f"more than {self.max_items} items")
        item, out = self.item, []
        for index, element in enumerate(value):
            try:
                kept = item.conform(element)
            except Invalid as invalid:
                raise invalid.at(index) from None
            if kept is not DROP:
                out.append(kept)
        return out


class Object:
    """An object: required fields present, known fields conformed, every other key dropped."""

    __slots__ = ("fields", "required", "name")

    def __init__(self, fields: dict, required: tuple[str, ...] = (), name: str | None = None):
        """``name``: the definition's NSID, kept as ``$type`` when the value names it (clients
        write it on some refs, e.g. the record of a recordWithMedia embed)."""
        self.fields, self.required, self.name = fields, required, name

    def conform(self, value):
        if type(value) is not dict:
            raise Invalid("not an object")
        for name in self.required:
            if name not in value:
                raise Invalid("missing").at(name)
        out, fields = {}, self.fields
        for name, item in value.items():
            kind = fields.get(name)
            if kind is None:
                continue
            try:
                kept = kind.conform(item)
            except Invalid as invalid:
                raise invalid.at(name) from None
            if kept is not DROP:
                out[name] = kept
        if self.name is not None and value.get("$type") in (self.name, f"{self.name}#main"):
            out["$type"] = self.name
        return out


def _type_name(name: str) -> str:
    """``app.bsky.embed.images#main`` and ``app.bsky.embed.images`` name the same definition."""
    return name[:-5] if name.endswith("#main") else name


class Union:
    """An open union: ``$type`` picks the member; an unknown (well-formed) type is dropped."""

    __slots__ = ("members",)

    def __init__(self, members: dict[str, Object]):
        self.members = members

    def conform(self, value):
        if type(value) is not dict:
            raise Invalid("not an object")
        name = value.get("$type")
        if type(name) is not str:
            raise Invalid("missing").at("$type")
        name = _type_name(name)
        member = self.members.get(name)
        if member is None:
            nsid, _, fragment = name.partition("#")
            if not atproto_syntax.is_nsid(nsid) or (fragment and not fragment.isidentifier()):
                raise Invalid("not a valid type name").at("$type")
            return DROP
        out = member.conform(value)
        out["$type"] = name
        return out


class Blob:
    """A blob reference: ``{$type: blob, ref: {$link: cid}, mimeType, size}``, or the legacy
    ``{cid, mimeType}`` shape still found in old records."""

    __slots__ = ()
    _mime = Text()

    def conform(self, value):
        if type(value) is not dict:
            raise Invalid("not a blob")
        if value.get("$type") == "blob":
            ref = value.get("ref")
            if type(ref) is not dict or not atproto_syntax.is_cid(ref.get("$link")):
                raise Invalid("not a valid CID").at("$link").at("ref")
            size = value.get("size")
            if type(size) is not int or size < 0:
                raise Invalid("not a size").at("size")
            return {"$type": "blob", "ref": {"$link": ref["$link"]}, "mimeType": self._mime_of(value), "size": size}
        if "cid" in value and "$type" not in value:
            if not atproto_syntax.is_cid(value["cid"]):
                raise Invalid("not a valid CID").at("cid")
            return {"cid": value["cid"], "mimeType": self._mime_of(value)}
        raise Invalid("not a blob")

    def _mime_of(self, value: dict) -> str:
        try:
            return self._mime.conform(value.get("mimeType"))
        except Invalid as invalid:
            raise invalid.at("mimeType") from None


def too_deep(value, limit: int) -> bool:
    """Whether arrays/objects nest more than ``limit`` levels (the value itself is level 1)."""
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > limit:
            return True
        for child in node.values() if type(node) is dict else node:
            if type(child) is dict or type(child) is list:
                stack.append((child, level + 1))
    return False
