"""The offline classifier: lexicons and rules, no network, deterministic.

It is the default when no LLM key is configured, so the system classifies with no network at
all. It reads only what the words support and says ``unknown`` (or nothing) elsewhere:

1. Topic. Strong cannabis words (weed, THC, dispensary) make a post about cannabis; slang that
   is also everyday language (high, gas, flower, joint) needs company; hints of other topics
   (dogs, baking, weather, films, sports, a Girl Scout cookie sale) outweigh slang. A post
   that is not about cannabis gets ``cannabis_related=False``, product ``none`` and no entities.
2. Entities. Strain and brand names, abbreviations (GSC, GDP, GG4) and one-typo spellings of
   long names. Names that are everyday phrases (Wedding Cake, Northern Lights, Pineapple
   Express, Cookies) count only with cannabis words around them that outweigh the other topic's.
   A name inside a longer one ("Cookies" in "Girl Scout Cookies") is not a second mention.
3. Rules over the terms found: negation ("didn't make me sleepy", "no paranoia", "nicht müde")
   cancels effects and flips sentiment; desire cues and questions make effects wanted rather
   than felt; "but" weighs what follows; sarcasm cues with a complaint turn praise negative.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from typing import Iterable, Sequence

from services.classify.lexicon import FUZZY_MIN, Hit, Lexicon, load, tokens
from services.classify.schema import Classification, Failure, Outcome, PostText

#: Raise when a rule change alters results: ``model_version`` is "offline-lexicon-<lexicon hash>.<this>".
RULES_VERSION = 1
#: Longest text analysed (a Bluesky post is at most 300 graphemes; anything longer is not a post).
MAX_CHARS = 3000
MAX_WORDS = 600
CLAUSE_BREAKS = frozenset({".", ",", "!", "?", ";", ":", "…", "but", "pero", "aber", "mas", "mais", "however"})
SENTENCE_BREAKS = frozenset({".", "!", "?", "…", "\n"})
NEGATION_WINDOW = 3
#: |compound| below this is neutral (VADER's own 0.05 calls too many plain statements positive).
NEUTRAL_BAND = 0.15
CUE_WINDOW = 6
#: Sentiment score given to a cannabis experience post that says nothing negative (see its use).
SHARING_PRIOR = 20
#: Which label a field gets when a post names several (most telling first).
CONSUMER_ORDER = ("medical", "wellness", "connoisseur", "spiritual", "social", "recreational")
EXPERIENCE_ORDER = ("curious", "newbie", "expert", "daily", "regular")
DOSAGE_ORDER = ("microdose", "heavy", "light", "moderate")
QUALITY_ORDER = ("poor", "premium", "average", "good")
PRICE_ORDER = ("deal", "expensive", "cheap", "fair")
POSITIVE_EMOTIONS = frozenset({"joy", "excitement", "gratitude", "relief"})
#: Frustrations with a target a business can act on: a post voicing them negatively complains.
COMPLAINT_FRUSTRATIONS = frozenset({"price", "availability", "quality", "service", "packaging", "testing",
                                    "delivery"})
#: Frustrations that a post states outright; the others count only in a negative post.
EXPLICIT_FRUSTRATIONS = frozenset({"price", "availability", "quality", "potency", "side_effects"})
MEDIA_TYPES = {"images": "image", "video": "video", "external": "link", "record": "quote",
               "recordWithMedia": "quote"}
_DISPENSARY = re.compile(r"((?:[A-Z0-9][\w'&.]*\s+){1,3})(?:[Dd]ispensary|[Dd]ispensaries|[Cc]annabis [Cc]o\b)")
_NOT_A_NAME = frozenset({"the", "my", "a", "an", "local", "this", "that", "best", "any", "which", "new", "our",
                         "your", "his", "her", "their", "one", "every", "no", "i", "cannabis", "weed", "legal",
                         "medical", "recreational", "rec", "nearest", "favorite", "fave", "at", "from", "to"})
_NONE: list = []
_PRICE = re.compile(r"[$€£]\s?\d|\d\s?(?:\$|€|£|usd|eur|bucks|dollars|euros|reais|pesos)\b", re.I)


class OfflineClassifier:
    """Lexicon and rule classifier (see the module docstring); one instance per process is enough."""

    def __init__(self, lexicon_dir: str | None = None, lexicon: Lexicon | None = None):
        self.lexicon = lexicon or load(lexicon_dir)
        self.model_version = f"offline-lexicon-{self.lexicon.version}.{RULES_VERSION}"

    @classmethod
    def from_settings(cls, settings) -> "OfflineClassifier":
        """The classifier with the operator's lexicons (``CLASSIFIER_LEXICON_DIR``) merged in."""
        return cls(getattr(settings, "classifier_lexicon_dir", None))

    def classify(self, posts: Sequence[PostText]) -> Outcome:
        started = time.perf_counter()
        results: list[Classification | Failure] = []
        for post in posts:
            key = getattr(post, "key", "?")
            try:
                results.append(self.classify_text(post.text, has_media=bool(post.has_media),
                                                  embed_type=post.embed_type, langs=post.langs))
            except Exception as exc:  # one bad post must not lose the batch
                results.append(Failure(key=str(key), error=f"offline classifier: {type(exc).__name__}: {exc}"[:500]))
        return Outcome(results=results, model_version=self.model_version,
                       elapsed_ms=int((time.perf_counter() - started) * 1000))

    def classify_text(self, text: str, has_media: bool = False, embed_type: str | None = None,
                      langs: Sequence[str] = ()) -> Classification:
        """One text's classification (raises only for a text that is not a string)."""
        if not isinstance(text, str):
            raise TypeError("post text must be a string")
        return _Reading(self.lexicon, text, has_media, embed_type, langs).classification()


class _Reading:
    """The analysis of one post: its tokens, the lexicon terms in them, and the rules on top."""

    def __init__(self, lexicon: Lexicon, text: str, has_media: bool, embed_type: str | None,
                 langs: Sequence[str] = ()):
        self.lexicon = lexicon
        self.text = text[:MAX_CHARS]
        self.has_media = has_media
        self.embed_type = embed_type
        words = tokens(self.text)[:MAX_WORDS]
        self.words = words
        self.hits: dict[str, list[Hit]] = {}
        for hit in lexicon.scan(words):
            self.hits.setdefault(hit.kind, []).append(hit)
        self._typos(lexicon, words)
        self._longest_cache: dict[str, list[Hit]] = {}
        self._cues: dict[str, list[Hit]] | None = None
        self._sentences: list[tuple[int, int]] | None = None
        self._named_spans: list[tuple[int, int]] | None = None
        self.langs = tuple(str(code)[:2].lower() for code in langs or ())
        self.negated_at = {i for h in self.hits.get("cue", ()) if h.name == "negation" for i in range(h.start, h.end)}

    def _typos(self, lexicon: Lexicon, words: list[str]) -> None:
        """Names written with one typo ("Trainwrek", "blue dreem"): found again on corrected words.

        Only strain, brand and topic terms that cover a corrected word are taken from the second
        pass, so a corrected word never changes sentiment, effects or anything else.
        """
        vocabulary = lexicon.vocabulary
        fixed = list(words)
        changed = set()
        for i, word in enumerate(words):
            if len(word) >= 5 and word not in vocabulary:
                correction = lexicon.correct(word)
                if correction:
                    fixed[i] = correction
                    changed.add(i)
        if not changed:
            return
        for hit in lexicon.scan(fixed):
            covered = [i for i in changed if hit.start <= i < hit.end]
            # A short word is only trusted inside a longer name ("blue dreem"), never alone ("runts").
            if hit.kind in ("strain", "brand", "topic") and covered and (
                    hit.end - hit.start > 1 or len(words[covered[0]]) >= FUZZY_MIN):
                self.hits.setdefault(hit.kind, []).append(hit)

    # ---------- helpers ----------
    def of(self, kind: str) -> list[Hit]:
        return self.hits.get(kind, _NONE)

    def longest(self, kind: str) -> list[Hit]:
        """Hits of ``kind`` not lying inside a longer hit of the same kind (computed once)."""
        found = self._longest_cache.get(kind)
        if found is None:
            found = self._longest_cache[kind] = self._longest(self.of(kind))
        return found

    def cue_positions(self, role: str) -> list[Hit]:
        """Hits of the cue ``role`` (negation, desire, contrast...), grouped once per post."""
        if self._cues is None:
            self._cues = {}
            for hit in self.of("cue"):
                self._cues.setdefault(hit.name, []).append(hit)
        return self._cues.get(role, _NONE)

    def negated(self, hit: Hit) -> bool:
        """A negation word within a few words before the term, in the same clause."""
        words = self.words
        for i in range(hit.start - 1, max(-1, hit.start - 1 - NEGATION_WINDOW), -1):
            if words[i] in CLAUSE_BREAKS:
                return False
            if i in self.negated_at:
                return True
        return False

    def sentence_of(self, position: int) -> tuple[int, int]:
        """(first token, end) of the sentence holding a token; a closing "?" belongs to it."""
        if self._sentences is None:
            bounds: list[tuple[int, int]] = []
            words = self.words
            start = 0
            for i, word in enumerate(words):
                if word in SENTENCE_BREAKS:
                    end = i + 1 if word == "?" else i
                    bounds.extend([(start, end)] * (i - start))
                    bounds.append((start, end) if word == "?" else (i, i + 1))
                    start = i + 1
            bounds.extend([(start, len(words))] * (len(words) - start))
            self._sentences = bounds
        if not self._sentences:
            return 0, 0
        return self._sentences[min(position, len(self._sentences) - 1)]

    def near(self, hit: Hit, role: str, before_only: bool = False) -> bool:
        """A cue of ``role`` within a few words of the term, in the same sentence."""
        low, high = self.sentence_of(hit.start)
        for cue in self.cue_positions(role):
            if cue.start < low or cue.start >= high:
                continue
            if cue.end <= hit.start and hit.start - cue.end <= CUE_WINDOW:
                return True
            if not before_only and cue.start >= hit.end and cue.start - hit.end <= CUE_WINDOW:
                return True
        return False

    def in_question(self, hit: Hit) -> bool:
        low, high = self.sentence_of(hit.start)
        return high > 0 and high <= len(self.words) and self.words[high - 1] == "?"

    @staticmethod
    def _inside(hit: Hit, spans: Iterable[tuple[int, int]]) -> bool:
        return any(s <= hit.start and hit.end <= e and (e - s) > (hit.end - hit.start) for s, e in spans)

    @staticmethod
    def _longest(hits: list[Hit]) -> list[Hit]:
        """Drop hits lying inside a longer hit of the same list."""
        if len(hits) < 2 or all(h.end - h.start == 1 for h in hits):
            return hits
        spans = [(h.start, h.end) for h in hits]
        return [h for h in hits if not _Reading._inside(h, spans)]

    # ---------- topic and entities ----------
    def entities(self) -> tuple[list[Hit], list[Hit]]:
        """(distinctive, ambiguous) strain/brand hits, nested names removed, strain before brand."""
        found = self._longest(self.of("strain") + self.of("brand"))
        chosen: dict[tuple[int, int], Hit] = {}
        for hit in found:
            span = (hit.start, hit.end)
            other = chosen.get(span)
            if other is None:
                chosen[span] = hit
            elif other.kind == "brand" and hit.kind == "strain" and not self._after_maker_word(hit):
                chosen[span] = hit
        hits = sorted(chosen.values(), key=lambda h: h.start)
        return [h for h in hits if not h.value], [h for h in hits if h.value]

    def _after_maker_word(self, hit: Hit) -> bool:
        return hit.start > 0 and self.words[hit.start - 1] in ("by", "from", "von", "de", "par")

    def topic(self) -> None:
        """Is the post about cannabis, and which names in it are strains and brands?

        Strong words decide alone; slang counts 1 and everyday words (high, smoke, pot) 0.5, and
        the post needs a slang word and 2 points that outweigh the other topics' hints; a name
        that is an everyday phrase needs cannabis words that outweigh those hints.
        """
        self.distinctive, ambiguous = self.entities()
        spans = [(h.start, h.end) for h in self.distinctive + ambiguous]
        hashtags = {i + 1 for i, w in enumerate(self.words) if w == "#"}
        strong = slang = hints = 0
        everyday = 0.0
        seen: set[int] = set()
        other_topics = [(h.start, h.end) for h in self.of("topic") if h.value == "none"]
        for hit in self.of("topic"):
            # A word inside a name is the name's ("wedding" in "Wedding Cake"); a word inside
            # another topic's phrase is that topic's ("cart" in "shopping cart").
            if hit.start in seen or self._inside(hit, spans) or (hit.value != "none"
                                                                  and self._inside(hit, other_topics)):
                continue
            if hit.value != "none" and any(s < hit.end and hit.start < e for s, e in spans):
                continue
            seen.add(hit.start)
            if hit.value == "strong":
                if hit.start in hashtags:
                    slang += 1
                else:
                    strong += 1
            elif hit.value == "weak":
                slang += 1
            elif hit.value == "everyday":
                everyday += 0.5
            else:
                hints += 1
        usage, specific_product = self._usage_evidence(spans)
        weak = slang + everyday + usage
        # A name right after another topic's word is that thing's name ("my dog Gelato", "mi perro Runtz").
        named = {h.end for h in self.of("topic") if h.value == "none"}
        distinctive = [h for h in self.distinctive if not ({h.start, h.start - 1} & named)]
        ambiguous = [h for h in ambiguous if not ({h.start, h.start - 1} & named)]
        cannabis_words = 2 * strong + weak + 2 * len(distinctive)
        accept_ambiguous = cannabis_words > hints and bool(strong or weak or distinctive)
        self.distinctive = distinctive
        self.accepted = sorted(distinctive + (ambiguous if accept_ambiguous else []), key=lambda h: h.start)
        self.strong, self.weak, self.hints = strong, weak, hints
        self.cannabis = bool(strong or distinctive or ((slang or specific_product) and weak >= 2 and weak > hints)
                             or (ambiguous and accept_ambiguous))
        self.entity_spans = [(h.start, h.end) for h in self.accepted]

    def _usage_evidence(self, spans: list[tuple[int, int]]) -> tuple[float, bool]:
        """Evidence from how the post talks: a felt effect or helped symptom (1), a product word
        (1 when it is no topic word itself, like "tincture"; 0.5 for "bowl", "pen"), and whether
        such a specific product word was there (it can stand in for slang)."""
        effects = any(not any(s < h.end and h.start < e for s, e in spans) for h in self.of("effect"))
        symptoms = any(self.near(h, "relief") or self.near(h, "desire", before_only=True) or self.in_question(h)
                       for h in self.of("symptom"))
        other = spans + [(h.start, h.end) for h in self.of("topic") if h.value == "none"]
        topic_words = [(h.start, h.end) for h in self.of("topic") if h.value != "none"]
        specific = everyday = False
        for hit in self.of("product"):
            if hit.value != 1.0 or any(s < hit.end and hit.start < e for s, e in other):
                continue
            if any(s <= hit.start and hit.end <= e for s, e in topic_words):  # "bowl", not "infused drinks"
                everyday = True
            else:
                specific = True
        return float(effects or symptoms) + (1.0 if specific else 0.5 if everyday else 0.0), specific

    # ---------- the fields ----------
    def product(self, strain: str | None, brand_category: str | None) -> str:
        scores: Counter[str] = Counter()
        first: dict[str, int] = {}
        strain_spans = [(h.start, h.end) for h in self.accepted if h.kind == "strain"]
        complaint_spans = [(h.start, h.end) for h in self.of("frustration")]
        for hit in self.longest("product"):
            # "Cake" in a strain name is no product; "seeds in it" is a complaint about flower.
            if self._inside(hit, strain_spans) or self._inside(hit, complaint_spans):
                continue
            scores[hit.name] += hit.value or 1.0
            first.setdefault(hit.name, hit.start)
        if brand_category and brand_category != "dispensary":
            scores[brand_category] += 0.6  # what a brand mostly makes; a product word beats it
            brand_at = next(h.start for h in self.accepted if h.kind == "brand")
            first[brand_category] = min(first.get(brand_category, brand_at), brand_at)
        if scores:
            return max(scores, key=lambda name: (scores[name], -first[name]))
        return "flower" if strain else "unknown"

    def sentiment(self) -> tuple[str, int]:
        """(label, score -100..100): word weights (VADER's and the lexicon's), felt effects and
        stated frustrations, with negation, intensifiers, "but", questions and sarcasm applied."""
        hits = [h for h in self.longest("sentiment") if not self._inside(h, self.entity_spans)]
        if self.language() != "en":
            hits = [h for h in hits if h.name != "vader"]
        words = self.words
        contrast = [c.start for c in self.cue_positions("contrast")]
        pivot = contrast[0] if contrast else None
        intensify = {i for h in self.cue_positions("intensifier") for i in range(h.start, h.end)}
        soften = {i for h in self.cue_positions("diminisher") for i in range(h.start, h.end)}
        sarcastic = bool(self.cue_positions("sarcasm"))
        total = raw_pos = raw_neg = plain_pos = plain_neg = 0.0
        questions = self._question_spans()
        felt = self._felt()
        for hit in hits + felt:
            weight = hit.value
            if weight > 0 and self.near(hit, "desire", before_only=True):
                continue  # "looking for something better" praises nothing
            if any(low <= hit.start < high for low, high in questions):
                weight *= 0.0 if weight > 0 else 0.6  # nor does "what's the best cart?"
            if hit.start - 1 in intensify or hit.start - 2 in intensify:
                weight *= 1.3
            if hit.start - 1 in soften:
                weight *= 0.7
            if self.negated(hit):
                weight *= -0.74
            if hit.kind != "felt":
                if weight > 0:
                    plain_pos += weight
                else:
                    plain_neg -= weight
            if pivot is not None:
                weight *= 0.5 if hit.start < pivot else 1.5
            if weight > 0:
                raw_pos += weight
            else:
                raw_neg -= weight
            total += weight
        complaint = raw_neg > 0 or bool(self.of("frustration")) or "🙄" in words or bool(_PRICE.search(self.text))
        self.sarcastic = sarcastic and raw_pos > 0 and complaint
        if self.sarcastic:
            total, raw_neg, raw_pos = -(raw_pos + raw_neg), raw_pos + raw_neg, 0.0
            plain_neg, plain_pos = plain_pos + plain_neg, 0.0
        bangs = min(3, words.count("!"))
        if total:
            total += math.copysign(0.3 * bangs, total)
        elif bangs and not questions:
            total = raw_pos = 0.7  # an exclamation with nothing negative in it is mostly good news
        compound = total / math.sqrt(total * total + 15)
        score = int(round(compound * 100))
        if plain_pos >= 1.5 and plain_neg >= 1.5 and min(plain_pos, plain_neg) / max(plain_pos, plain_neg) >= 0.6:
            label = "mixed"
        elif compound >= NEUTRAL_BAND:
            label = "positive"
        elif compound <= -NEUTRAL_BAND:
            label = "negative"
        else:
            label = "neutral"
        return label, score

    def language(self) -> str:
        """The post's language: its own tag if it has one, else the language of most of its short words."""
        if self.langs:
            return self.langs[0]
        counts = Counter(h.name for h in self.of("cue") if h.name.startswith("language_"))
        if not counts:
            return "en"
        best = max(counts, key=lambda name: (counts[name], name == "language_en"))
        return best.removeprefix("language_") if counts[best] > counts.get("language_en", 0) else "en"

    def _question_spans(self) -> list[tuple[int, int]]:
        """The sentences that end with a question mark."""
        spans = []
        for i, word in enumerate(self.words):
            if word == "?":
                spans.append(self.sentence_of(max(0, i - 1)))
        return spans

    def _felt(self) -> list[Hit]:
        """Felt effects and relieved symptoms as sentiment: relaxed is good news, paranoid is not."""
        felt = []
        for hit in self._longest(self.of("effect") + self.of("symptom")):
            if self._inside(hit, self.entity_spans) or self.negated(hit) or self.in_question(hit):
                continue
            if self.near(hit, "desire", before_only=True):
                continue
            if hit.kind == "symptom":
                if self.near(hit, "relief"):
                    felt.append(Hit("felt", "relief", hit.start, hit.end, 1.5))
            elif hit.value:
                felt.append(Hit("felt", hit.name, hit.start, hit.end, hit.value))
        for hit in self.longest("frustration"):
            if hit.name in EXPLICIT_FRUSTRATIONS and not self.negated(hit) and not self.in_question(hit):
                felt.append(Hit("felt", hit.name, hit.start, hit.end, -1.0))
        for hit in self.longest("price"):
            if hit.name in ("deal", "expensive") and not self.negated(hit):
                felt.append(Hit("felt", hit.name, hit.start, hit.end, 1.0 if hit.name == "deal" else -1.0))
        return felt

    def effects(self) -> tuple[list[str], list[str]]:
        """(felt, wanted) effect tags; a symptom counts only when helped or wanted."""
        felt: list[str] = []
        wanted: list[str] = []
        for hit in self._longest(self.of("effect") + self.of("symptom")):
            if self._inside(hit, self.entity_spans) or self.negated(hit):
                continue
            tag = hit.value if hit.kind == "symptom" else hit.name
            desired = self.near(hit, "desire", before_only=True) or self.in_question(hit)
            if hit.kind == "symptom" and not desired and not self.near(hit, "relief"):
                continue
            (wanted if desired else felt).append(tag)
        return list(dict.fromkeys(felt)), list(dict.fromkeys(wanted))

    def labels(self, kind: str, negatable: bool = True) -> list[str]:
        """Labels of ``kind`` found (not negated, not inside a longer name or product phrase:
        "dry" in "dry herb vaporizer" is no complaint), in order of first appearance."""
        if self._named_spans is None:
            self._named_spans = self.entity_spans + [(h.start, h.end) for h in self.longest("product")]
        hits = [h for h in self.longest(kind) if not self._inside(h, self._named_spans)]
        return list(dict.fromkeys(h.name for h in hits if not (negatable and self.negated(h))))

    @staticmethod
    def pick(found: list[str], order: tuple[str, ...]) -> str:
        for label in order:
            if label in found:
                return label
        return "unknown"

    def dispensary(self, brand_hits: list[Hit]) -> str | None:
        """A dispensary chain from the brand lexicon, else "<Name> Dispensary" as written."""
        for hit in brand_hits:
            if self.lexicon_brand_category(hit.name) == "dispensary":
                return hit.name
        match = _DISPENSARY.search(self.text)
        if not match:
            return None
        words = match.group(1).split()
        while words and words[0].lower().strip(".,'") in _NOT_A_NAME:
            words = words[1:]
        name = " ".join(words).strip(" .,'")
        return name or None

    def lexicon_brand_category(self, name: str) -> str | None:
        entry = self.lexicon.entries.get("brand", {}).get(name)
        return entry["category"] if entry else None

    def intent(self, sentiment: str, frustrations: list[str]) -> str:
        """What the post does. A complaint has a target (a product, a price, a shop); venting is
        frustration without one; side effects and weak highs are experiences, not complaints."""
        found = set(self.labels("intent"))
        if not self.words:
            return "unknown"
        negative = sentiment == "negative"
        named = bool(self.accepted or self.longest("product"))
        targeted = [f for f in frustrations if f in COMPLAINT_FRUSTRATIONS or (f == "potency" and named)]
        if "asking" in found and not (negative and (targeted or "venting" in found)):
            return "asking"
        if "recommending" in found and sentiment in ("positive", "neutral"):
            return "recommending"
        if negative and (targeted or "complaining" in found) and self.cannabis:
            return "complaining"
        if negative and ("venting" in found or {"legality", "stigma"} & set(frustrations)):
            return "venting"
        if "celebrating" in found and sentiment != "negative":
            return "celebrating"
        if "informing" in found and not self.cue_positions("first_person"):
            return "informing"
        if negative and not self.of("effect"):
            has_target = self.cannabis and (self.accepted or self.longest("product") or _PRICE.search(self.text))
            return "complaining" if has_target else "venting"
        return "sharing"

    def classification(self) -> Classification:
        self.topic()
        label, score = self.sentiment()
        emotions = self.labels("emotion")
        if self.sarcastic:  # "thanks a lot" said through teeth is not gratitude
            emotions = [e for e in emotions if e not in POSITIVE_EMOTIONS] + ["frustration"]
        time_found = self.labels("time")
        if "evening" in time_found and "night" in time_found:
            time_found.remove("evening")
        time_of_day = time_found[0] if time_found else "unknown"  # [time.unknown]: "night and day"
        regions = self.longest("region")
        region = regions[0] if regions else None
        media_type = None
        if self.embed_type:
            media_type = MEDIA_TYPES.get(self.embed_type.rsplit(".", 1)[-1])
        elif self.has_media:
            media_type = "image"
        post_hints = self.labels("post", negatable=False)

        if not self.cannabis:
            intent = self.intent(label, [])
            cues = self.hints + len(self.words) // 15
            return Classification(
                cannabis_related=False, confidence=min(90, 45 + 10 * self.hints) if self.words else 20,
                product_category="none", sentiment=label, sentiment_score=score, emotions=emotions,
                intent_type=intent, purchase_intent=0, purchase_stage="unknown", time_of_day=time_of_day,
                post_type=self._post_type(intent, post_hints, review=False),
                region_hint=region.name if region else None, media_type=media_type,
                data_richness=1 if cues < 2 else 2, business_value="low")

        strains = [h for h in self.accepted if h.kind == "strain"]
        brands = [h for h in self.accepted if h.kind == "brand"]
        strain = strains[0].name if strains else None
        # A product's maker says more than the chain that sold it ("a Cresco cart from Curaleaf").
        makers = [h for h in brands if self.lexicon_brand_category(h.name) != "dispensary"]
        brand = (makers or brands)[0].name if brands else None
        brand_category = self.lexicon_brand_category(brand) if brand else None
        product = self.product(strain, brand_category)
        felt, wanted = self.effects()
        frustrations = [f for f in self.labels("frustration")
                        if f in EXPLICIT_FRUSTRATIONS or label in ("negative", "mixed")]
        if label == "positive" and not self.sarcastic:  # "expensive but worth every penny"
            frustrations = [f for f in frustrations if f == "availability"]
        if label == "negative" and _PRICE.search(self.text) and "price" not in frustrations:
            frustrations.append("price")  # "$60 for an eighth in Illinois is insane"
        if self.sarcastic and _PRICE.search(self.text) and "price" not in frustrations:
            frustrations.insert(0, "price")
        intent = self.intent(label, frustrations)
        if (label == "neutral" and score >= 0 and intent == "sharing" and not self._question_spans()
                and (strain or brand or felt or self.longest("product"))):
            # People telling the community what they are smoking mostly enjoy it; with nothing
            # negative said, that base rate beats "neutral" (measured on the gold set).
            label, score = "positive", max(score, SHARING_PRIOR)

        named_something = bool(strain or brand or product != "unknown")
        stage, purchase_intent = self.purchase(intent, named_something or bool(wanted), frustrations)

        prices = self.labels("price")
        price_mentioned = "mention" in prices or bool(_PRICE.search(self.text)) or any(
            p in prices for p in ("expensive", "cheap", "deal", "fair"))
        price_sentiment = next((p for p in PRICE_ORDER if p in prices), None)
        if price_sentiment is None and "price" in frustrations:
            price_sentiment = "expensive"
        legal = self.labels("legal")
        legal_context = (legal[0] if legal else region.value if region else "unknown") or "unknown"
        consumer = self.labels("consumer")
        consumer_type = self.pick(consumer, CONSUMER_ORDER)
        if consumer_type == "unknown" and ("pain_relief" in felt + wanted or "anxiety_relief" in felt + wanted):
            consumer_type = "wellness"
        quality = self.pick(self.labels("quality"), QUALITY_ORDER)
        if self.sarcastic and quality in ("good", "premium"):
            quality = "unknown"
        review = bool(post_hints and "review" in post_hints and (strain or brand or product != "unknown")
                      and label != "neutral")
        occasions = self.labels("occasion", negatable=False)
        settings = self.labels("setting", negatable=False)
        lifestyle = self.labels("lifestyle", negatable=False)
        dispensary = self.dispensary(brands)
        experience = self.pick(self.labels("experience"), EXPERIENCE_ORDER)
        dosage = self.pick(self.labels("dosage"), DOSAGE_ORDER)

        filled = sum(map(bool, (strain, brand, product != "unknown", felt or wanted, frustrations,
                                time_of_day != "unknown", region, occasions, settings, price_mentioned,
                                consumer_type != "unknown", experience != "unknown", dosage != "unknown",
                                emotions, dispensary)))
        segments = audience_segments(purchase_intent, dispensary, brand, consumer_type, felt + wanted, quality,
                                     product)
        if purchase_intent >= 60 or ({"price", "availability"} & set(frustrations) and product != "unknown") \
                or (brand and label != "neutral"):
            value = "high"
        elif named_something or felt or wanted or frustrations:
            value = "medium"
        else:
            value = "low"
        evidence = self.strong + self.weak + 2 * len(self.accepted) + (product != "unknown")
        return Classification(
            cannabis_related=True, confidence=int(min(95, 35 + 8 * evidence)),
            experience_level=experience, consumer_type=consumer_type, lifestyle_tags=lifestyle,
            occasion=occasions[0] if occasions else None, setting=settings[0] if settings else None,
            time_of_day=time_of_day, is_ritual=bool(self.of("ritual")),
            intent_type=intent, purchase_intent=purchase_intent, purchase_stage=stage,
            product_category=product, effects_mentioned=felt, effects_desired=wanted,
            quality_perception=quality, dosage_pattern=dosage,
            post_type=self._post_type(intent, post_hints, review), media_type=media_type,
            sentiment=label, sentiment_score=score, emotions=emotions,
            brand_mentioned=brand, strain_mentioned=strain, dispensary_mentioned=dispensary,
            price_mentioned=price_mentioned, price_sentiment=price_sentiment,
            frustrations=frustrations, region_hint=region.name if region else None, legal_context=legal_context,
            data_richness=min(10, 1 + filled), business_value=value, audience_segments=segments)

    def purchase(self, intent: str, named_something: bool, frustrations: list[str]) -> tuple[str, int]:
        """(purchase_stage, purchase_intent): the strongest purchase cue not negated ("heading to
        the dispo" 85, "my go-to" 50, "just bought" 35), else asking about a named product
        (considering, 45), else a low base; still hunting a sold-out product means wanting it."""
        stages = [h for h in self.of("purchase") if not self.negated(h)]
        if stages:
            best = max(stages, key=lambda h: h.value)
            stage, score = best.name, best.value
        elif intent == "asking" and named_something:
            stage, score = "considering", 45
        else:
            stage, score = "unknown", 20 if named_something else 10
        if "availability" in frustrations:
            score = max(score, 45)
        return stage, score

    def _post_type(self, intent: str, post_hints: list[str], review: bool) -> str:
        if intent == "asking":
            return "question"
        if review:
            return "review"
        by_intent = {"recommending": "recommendation", "complaining": "vent", "venting": "vent",
                     "celebrating": "celebration"}
        if intent in by_intent:
            return by_intent[intent]
        if intent == "informing":
            return "education" if "education" in post_hints else "news"
        if "meme" in post_hints:
            return "meme"
        if self.has_media and len(self.words) < 8:
            return "photo"
        if self.cannabis and self.cue_positions("first_person"):
            return "experience"
        return "other"


def audience_segments(purchase_intent: int, dispensary: str | None, brand: str | None, consumer_type: str,
                      effects: list[str], quality: str, product: str) -> list[str]:
    """Which B2B audiences a post speaks to (schema.PREFERRED_TAGS["audience_segments"])."""
    segments = []
    if purchase_intent >= 50 or dispensary:
        segments.append("dispensary_target")
    if brand:
        segments.append("brand_target")
    if consumer_type == "wellness" or {"calm", "sleepy", "anxiety_relief"} & set(effects):
        segments.append("wellness_target")
    if quality == "premium" or consumer_type == "connoisseur":
        segments.append("premium_target")
    if product == "accessory":
        segments.append("accessory_target")
    if consumer_type == "medical":
        segments.append("medical_target")
    return segments
