"""The offline classifier's lexicons: TOML data files, validated, merged and compiled once.

The shipped files live in ``services/classify/lexicons/``; an operator's directory
(``CLASSIFIER_LEXICON_DIR``) is read after them, so its entries are added, and an entry with the
same section and name (``[strain."Blue Dream"]``, names compared case-insensitively) replaces the
shipped one. Every file is ``[<kind>.<name>]`` tables; a bad file stops loading with an error
naming the file, the entry and the problem, rather than silently classifying with half a
lexicon.

Matching is a dictionary from a phrase's first token to the phrases starting with it: text and
lexicon terms go through the same :func:`tokens`, so one pass over a post's tokens finds every
term of every kind (about 11,000 phrases incl. VADER's words; about a fifth of a post's time).
Longer strain and brand names also match with one typo (a deletion index, first letter fixed).
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from services.classify.schema import ENUMS

SHIPPED_DIR = Path(__file__).with_name("lexicons")

#: Roles of [cue.<role>] tables, which the rules of services/classify/offline.py use.
LANGUAGES = ("en", "es", "de", "pt", "fr")
CUE_ROLES = ("negation", "intensifier", "diminisher", "contrast", "sarcasm", "desire", "relief", "question",
             "first_person") + tuple(f"language_{code}" for code in LANGUAGES)
STRAIN_TYPES = ("indica", "sativa", "hybrid", "unknown")
BRAND_CATEGORIES = tuple(c for c in ENUMS["product_category"] if c not in ("unknown", "none")) + ("dispensary",)
TOPIC_STRENGTHS = ("strong", "weak", "everyday", "none")
#: Kinds whose entry names are enumeration values of a Classification field.
NAMED_BY_ENUM = {
    "product": ENUMS["product_category"], "intent": ENUMS["intent_type"], "purchase": ENUMS["purchase_stage"],
    "time": ENUMS["time_of_day"], "consumer": ENUMS["consumer_type"], "experience": ENUMS["experience_level"],
    "dosage": ENUMS["dosage_pattern"], "quality": ENUMS["quality_perception"], "legal": ENUMS["legal_context"],
    "price": ENUMS["price_sentiment"] + ("mention",), "post": ENUMS["post_type"], "cue": CUE_ROLES,
    "ritual": ("yes",),
}
#: Kinds whose entries are just ``terms``.
TERM_KINDS = ("product", "effect", "frustration", "intent", "time", "occasion", "setting", "lifestyle", "consumer",
              "experience", "dosage", "quality", "price", "emotion", "legal", "ritual", "post", "cue")
KINDS = TERM_KINDS + ("strain", "brand", "topic", "symptom", "sentiment", "purchase", "region")

_MARKS = re.compile(r"[\u0300-\u036f\ufe00-\ufe0f\u200b-\u200f\u2060-\u206f]")
_DASHES = re.compile(r"[-‐‑‒–—_]+")
_QUOTES = str.maketrans({"’": "'", "‘": "'", "´": "'", "`": "'"})
_TOKEN = re.compile(r"[^\W_]+(?:['.][^\W_]+)*|[^\w\s]")
_ELISION = re.compile(r"^(?:qu|[ldjmtscn])'(?=[^\W\d_]{2})")
FUZZY_MIN = 6


class LexiconError(ValueError):
    """A lexicon file that cannot be used; the message names the file, the entry and the problem."""


def normalize(text: str) -> str:
    """Case-, accent- and dash-insensitive form of text ("Müde" -> "mude", "pre-roll" -> "pre roll")."""
    text = unicodedata.normalize("NFKD", text.replace("\x00", " ")).translate(_QUOTES)
    return _DASHES.sub(" ", _MARKS.sub("", text)).casefold()


def tokens(text: str) -> list[str]:
    """Words (with inner apostrophes and dots: "didn't", "2.5mg") and single symbols/emoji.

    A possessive or "is" ending is dropped ("grinder's" -> "grinder", "it's" -> "it"), and so is
    a French elision ("l'huile" -> "huile", "j'adore" -> "adore"): lexicon terms go through the
    same function, so "it's legal" and "j'adore" still match.
    """
    return [w if "'" not in w else _ELISION.sub("", w[:-2] if len(w) > 3 and w.endswith("'s") else w)
            for w in _TOKEN.findall(normalize(text))]


@dataclass(frozen=True)
class Entity:
    """A strain or a brand: what the pipeline seeds the ``strains``/``brands`` tables with.

    ``aliases`` and ``ambiguous`` are the names as the lexicon file writes them (the canonical
    name left out); matching uses their normalized forms.
    """

    name: str
    aliases: tuple[str, ...]
    ambiguous: tuple[str, ...]
    kind: str                       # strain type (indica...) or brand category (vape, dispensary...)
    effects: tuple[str, ...] = ()


class Hit(NamedTuple):
    """One lexicon term found in a post: tokens ``start`` to ``end`` (exclusive)."""

    kind: str
    name: str
    start: int
    end: int
    value: Any = None   # sentiment weight, ambiguity flag, effect valence, symptom's effect tag,
                        # purchase intent, region's legal status, product weight, topic strength


@dataclass
class Lexicon:
    """All lexicon data, compiled for matching; build with :func:`load`."""

    strains: list[Entity]
    brands: list[Entity]
    entries: dict[str, dict[str, dict]]
    version: str
    sources: list[str]
    index: dict[str, list[tuple[tuple[str, ...], list[tuple[str, str, Any]]]]] = field(default_factory=dict)
    vocabulary: set[str] = field(default_factory=set)
    fuzzy: dict[str, set[str]] = field(default_factory=dict)
    _by_alias: dict[str, dict[str, str]] = field(default_factory=dict)

    # ---- resolving free-text names (the pipeline's brands/strains tables) ----
    def resolve_strain(self, name: str | None) -> str | None:
        """Canonical strain name for a free-text name ("gdp", "Blue Dreem" -> ...), else None."""
        return self._resolve("strain", name)

    def resolve_brand(self, name: str | None) -> str | None:
        """Canonical brand name for a free-text name ("stiizy" -> "Stiiizy"), else None."""
        return self._resolve("brand", name)

    def _resolve(self, kind: str, name: str | None) -> str | None:
        if not isinstance(name, str):
            return None
        words = tokens(name)
        key = " ".join(words)
        found = self._by_alias[kind].get(key) or self._by_alias[kind].get(key.replace(" ", ""))
        if found:
            return found
        corrected = " ".join(self.correct(w) or w for w in words)
        return self._by_alias[kind].get(corrected)

    # ---- matching ----
    def correct(self, token: str) -> str | None:
        """The lexicon word a long unknown word is one typo away from, if exactly one."""
        if not FUZZY_MIN - 1 <= len(token) <= 40 or token in self.vocabulary or not token.isalpha():
            return None
        found = set(self.fuzzy.get(token, ()))
        for i in range(len(token)):
            found.update(self.fuzzy.get(token[:i] + token[i + 1:], ()))
        found = {word for word in found if word[0] == token[0]}
        return found.pop() if len(found) == 1 else None

    def scan(self, words: list[str]) -> list[Hit]:
        """Every lexicon term in a token list (overlaps included; callers pick what they need)."""
        index = self.index
        hits: list[Hit] = []
        count = len(words)
        for start, word in enumerate(words):
            phrases = index.get(word)
            if phrases is None:
                continue
            for phrase, payloads in phrases:
                end = start + len(phrase)
                if end > count or (len(phrase) > 1 and tuple(words[start:end]) != phrase):
                    continue
                for kind, name, value in payloads:
                    hits.append(Hit(kind, name, start, end, value))
        return hits


@functools.lru_cache(maxsize=1)
def vader_weights() -> tuple[tuple[str, float], ...]:
    """VADER's English word weights (the ``vaderSentiment`` package's lexicon file), if installed.

    Only the word list is used: VADER's own scorer costs about 150 µs a post, as much as the
    whole offline classifier. Without the package the lexicon tables alone score sentiment.
    """
    try:
        from importlib.resources import files

        text = (files("vaderSentiment") / "vader_lexicon.txt").read_text(encoding="utf-8")
    except (ImportError, FileNotFoundError, OSError):
        return ()
    weights: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            try:
                weight = float(parts[1])
            except ValueError:
                continue
            key = " ".join(tokens(parts[0]))
            if key:
                weights.setdefault(key, weight)
    return tuple(sorted(weights.items()))


def _problem(source: str, kind: str, name: str, message: str) -> LexiconError:
    return LexiconError(f'{source}: [{kind}."{name}"]: {message}')


def _str_list(source: str, kind: str, name: str, entry: dict, key: str, required: bool = False) -> list[str]:
    value = entry.get(key, None)
    if value is None:
        if required:
            raise _problem(source, kind, name, f"missing '{key}' (a list of strings)")
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _problem(source, kind, name, f"'{key}' must be a list of strings")
    for item in value:
        if not tokens(item):
            raise _problem(source, kind, name, f"'{key}' has a term with no words: {item!r}")
    return value


def _check_entry(source: str, kind: str, name: str, entry: Any, extend: bool = False) -> dict:
    """Validate one entry; returns it with defaults filled in (``extend``: added to an entry)."""
    if not isinstance(entry, dict):
        raise _problem(source, kind, name, "must be a table, e.g. terms = [\"...\"]")
    if not name.strip():
        raise LexiconError(f"{source}: [{kind}]: an entry has an empty name")
    allowed = NAMED_BY_ENUM.get(kind)
    if allowed and name not in allowed:
        raise _problem(source, kind, name, f"unknown name; must be one of {', '.join(allowed)}")
    if kind in ("strain", "brand"):
        aliases = _str_list(source, kind, name, entry, "aliases")
        ambiguous = _str_list(source, kind, name, entry, "ambiguous")
        match_name = entry.get("match_name", True)
        if not isinstance(match_name, bool):
            raise _problem(source, kind, name, "'match_name' must be true or false")
        if not (aliases or ambiguous or match_name):
            raise _problem(source, kind, name, "has no name to match (no aliases and match_name = false)")
        if kind == "strain":
            strain_type = entry.get("type", "unknown")
            if strain_type not in STRAIN_TYPES:
                raise _problem(source, kind, name, f"'type' must be one of {', '.join(STRAIN_TYPES)}")
            effects = _str_list(source, kind, name, entry, "effects")
            return {"aliases": aliases, "ambiguous": ambiguous, "match_name": match_name, "type": strain_type,
                    "effects": effects}
        category = entry.get("category")
        if not (extend and category is None) and category not in BRAND_CATEGORIES:
            raise _problem(source, kind, name, f"'category' must be one of {', '.join(BRAND_CATEGORIES)}")
        return {"aliases": aliases, "ambiguous": ambiguous, "match_name": match_name, "category": category}
    if kind == "sentiment":
        words = entry.get("words")
        if not isinstance(words, dict) or not words:
            raise _problem(source, kind, name, "missing 'words' (a table of \"word\" = weight)")
        for word, weight in words.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not -4 <= weight <= 4:
                raise _problem(source, kind, name, f"weight of {word!r} must be a number from -4 to 4")
            if not tokens(word):
                raise _problem(source, kind, name, f"'words' has a term with no words: {word!r}")
        return {"words": dict(words)}
    terms = _str_list(source, kind, name, entry, "terms", required=True)
    if kind == "topic":
        strength = entry.get("cannabis")
        if strength not in TOPIC_STRENGTHS:
            raise _problem(source, kind, name, f"'cannabis' must be one of {', '.join(TOPIC_STRENGTHS)}")
        return {"terms": terms, "cannabis": strength}
    if kind == "symptom":
        effect = entry.get("effect")
        if not isinstance(effect, str) or not effect.strip():
            raise _problem(source, kind, name, "'effect' must be the effect tag the symptom's relief becomes")
        return {"terms": terms, "effect": effect}
    if kind == "purchase":
        intent = entry.get("intent")
        if isinstance(intent, bool) or not isinstance(intent, int) or not 0 <= intent <= 100:
            raise _problem(source, kind, name, "'intent' must be an integer from 0 to 100")
        return {"terms": terms, "intent": intent}
    if kind == "product":
        return {"terms": terms, "weak_terms": _str_list(source, kind, name, entry, "weak_terms")}
    if kind == "effect":
        valence = entry.get("valence", 0)
        if isinstance(valence, bool) or not isinstance(valence, (int, float)) or not -4 <= valence <= 4:
            raise _problem(source, kind, name, "'valence' must be a number from -4 to 4")
        return {"terms": terms, "valence": float(valence)}
    if kind == "region":
        legal = entry.get("legal", "unknown")
        if legal not in ENUMS["legal_context"]:
            raise _problem(source, kind, name, f"'legal' must be one of {', '.join(ENUMS['legal_context'])}")
        return {"terms": terms, "legal": legal}
    return {"terms": terms}


def read_file(path: Path) -> dict[str, dict[str, tuple[dict, bool, set[str]]]]:
    """One lexicon file, validated: {kind: {name: (entry, extend, keys the file gave)}}."""
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise LexiconError(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise LexiconError(f"{source}: not valid TOML: {exc}") from None
    result: dict[str, dict[str, tuple[dict, bool, set[str]]]] = {}
    for kind, table in data.items():
        if kind not in KINDS:
            raise LexiconError(f"{source}: unknown section [{kind}]; known: {', '.join(sorted(KINDS))}")
        if not isinstance(table, dict):
            raise LexiconError(f"{source}: [{kind}] must hold named tables such as [{kind}.\"name\"]")
        result[kind] = {}
        for name, entry in table.items():
            given = set(entry) if isinstance(entry, dict) else set()
            extend = entry.pop("extend", False) if isinstance(entry, dict) else False
            if not isinstance(extend, bool):
                raise _problem(source, kind, name, "'extend' must be true or false")
            result[kind][name] = (_check_entry(source, kind, name, entry, extend), extend, given)
    return result


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise LexiconError(f"{directory}: lexicon directory does not exist (CLASSIFIER_LEXICON_DIR)")
    return sorted(directory.glob("*.toml"))


def _merge(files: Iterable[Path]) -> dict[str, dict[str, dict]]:
    """Later files replace an entry of the same section and name; ``extend = true`` adds to it
    instead (lists are joined, word weights updated, other values replaced only if given)."""
    merged: dict[str, dict[str, tuple[str, dict]]] = {}
    for path in files:
        for kind, entries in read_file(path).items():
            bucket = merged.setdefault(kind, {})
            for name, (entry, extend, given) in entries.items():
                key = name.casefold()
                if not extend or key not in bucket:
                    if kind == "brand" and entry.get("category") is None:
                        raise _problem(str(path), kind, name, "extends no shipped brand; give its 'category'")
                    bucket[key] = (name, entry)
                    continue
                old_name, combined = bucket[key][0], dict(bucket[key][1])
                for field_name, value in entry.items():
                    if isinstance(value, list):
                        combined[field_name] = list(dict.fromkeys([*combined.get(field_name, []), *value]))
                    elif isinstance(value, dict):
                        combined[field_name] = {**combined.get(field_name, {}), **value}
                    elif field_name in given:
                        combined[field_name] = value
                bucket[key] = (old_name, combined)
    return {kind: dict(bucket.values()) for kind, bucket in merged.items()}


def _entity_names(name: str, entry: dict) -> tuple[list[str], list[str]]:
    """(distinctive names, ambiguous names) of a strain or brand, with run-together forms."""
    ambiguous = {" ".join(tokens(a)) for a in entry["ambiguous"]}
    distinctive = {" ".join(tokens(a)) for a in entry["aliases"]} - ambiguous
    if entry["match_name"]:
        own = " ".join(tokens(name))
        if own not in ambiguous:
            distinctive.add(own)
    for group in (distinctive, ambiguous):
        for alias in list(group):
            joined = alias.replace(" ", "")
            if joined != alias and joined not in distinctive and joined not in ambiguous:
                group.add(joined)
    return sorted(distinctive), sorted(ambiguous)


def _compile(entries: dict[str, dict[str, dict]], sources: list[str]) -> Lexicon:
    raw = repr(sorted((k, sorted(v.items())) for k, v in entries.items())).encode() + repr(vader_weights()).encode()
    lexicon = Lexicon(strains=[], brands=[], entries=entries, sources=sources,
                      version=hashlib.sha256(raw).hexdigest()[:8])
    phrases: dict[tuple[str, ...], list[tuple[str, str, Any]]] = {}

    def add(term: str, kind: str, name: str, value: Any = None) -> None:
        key = tuple(tokens(term))
        if key:
            payloads = phrases.setdefault(key, [])
            if (kind, name, value) not in payloads:
                payloads.append((kind, name, value))

    fuzzy_words: set[str] = set()
    for kind in ("strain", "brand"):
        lexicon._by_alias[kind] = {}
        for name, entry in entries.get(kind, {}).items():
            distinctive, ambiguous = _entity_names(name, entry)
            own = name.casefold()
            written_ambiguous = tuple(dict.fromkeys(a.strip() for a in entry["ambiguous"]
                                                    if a.strip().casefold() != own))
            written = tuple(dict.fromkeys(a.strip() for a in entry["aliases"]
                                          if a.strip().casefold() != own and a.strip() not in written_ambiguous))
            entity = Entity(name=name, aliases=written, ambiguous=written_ambiguous,
                            kind=entry.get("type") or entry.get("category"), effects=tuple(entry.get("effects", ())))
            (lexicon.strains if kind == "strain" else lexicon.brands).append(entity)
            for alias in distinctive:
                add(alias, kind, name, False)
            for alias in ambiguous:
                add(alias, kind, name, True)
            for alias in distinctive + ambiguous:
                lexicon._by_alias[kind].setdefault(alias, name)
                words = alias.split()
                shortest = FUZZY_MIN - 1 if len(words) > 1 else FUZZY_MIN  # a phrase's other words confirm
                fuzzy_words.update(w for w in words if len(w) >= shortest and w.isalpha())
            lexicon._by_alias[kind].setdefault(" ".join(tokens(name)), name)
    # VADER's words are the base; lexicon tables replace them, later tables win.
    weights = {word: ("vader", weight) for word, weight in vader_weights()}
    for entry in entries.get("sentiment", {}).values():
        weights.update((" ".join(tokens(word)), ("word", float(weight))) for word, weight in entry["words"].items())
    for word, (source, weight) in weights.items():
        if weight:
            add(word, "sentiment", source, weight)
    for kind in TERM_KINDS + ("topic", "symptom", "purchase", "region"):
        for name, entry in entries.get(kind, {}).items():
            value = {"topic": entry.get("cannabis"), "symptom": entry.get("effect"), "effect": entry.get("valence"),
                     "purchase": entry.get("intent"), "region": entry.get("legal")}.get(kind)
            if kind == "product":
                value = 1.0
                for term in entry["weak_terms"]:
                    add(term, kind, name, 0.5)
            for term in entry["terms"]:
                add(term, kind, name, value)
                if kind == "topic" and value == "strong":
                    fuzzy_words.update(w for w in tokens(term) if len(w) >= FUZZY_MIN + 1 and w.isalpha())
    index: dict[str, list] = {}
    for phrase, payloads in phrases.items():
        index.setdefault(phrase[0], []).append((phrase, payloads))
        lexicon.vocabulary.update(phrase)
    for bucket in index.values():
        bucket.sort(key=lambda item: -len(item[0]))
    lexicon.index = index
    for word in fuzzy_words:
        lexicon.fuzzy.setdefault(word, set()).add(word)
        for i in range(len(word)):
            lexicon.fuzzy.setdefault(word[:i] + word[i + 1:], set()).add(word)
    return lexicon


@functools.lru_cache(maxsize=8)
def _load(extra_dir: str | None) -> Lexicon:
    files = _files(SHIPPED_DIR)
    if extra_dir:
        files += _files(Path(extra_dir))
    return _compile(_merge(files), [str(f) for f in files])


def load(extra_dir: str | Path | None = None) -> Lexicon:
    """The shipped lexicons with ``extra_dir``'s files merged over them, compiled once per process.

    Raises :class:`LexiconError` for a missing directory or a bad file. Call
    :func:`reload` after editing files in a running process.
    """
    return _load(str(extra_dir) if extra_dir else None)


def reload() -> None:
    """Forget compiled lexicons (the next :func:`load` reads the files again)."""
    _load.cache_clear()
