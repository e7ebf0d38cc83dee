"""Synthetic Jetstream captures: a cannabis community inside a much larger network.

Why: the real samples are tiny and generic, while ingest, feeds and the end-to-end tests need
large, reproducible inputs that exercise every indexing rule (docs/indexing-rules.md) in
realistic proportions. ``generate_capture`` writes such a file, one Jetstream v1 event per
line, in the shapes the public stream uses, plus a ``.meta.json`` sidecar naming the members
(to register with ``cannect members add``) and the counts of each kind of event.

The population has three parts: members (about 1% of the active accounts, handles under
``cannect.space``), community accounts that post with cannabis tags, and the rest of the
network. Most events are likes of posts outside the community, as on the real stream; the
community part is rich enough to hit each rule: tag posts (facets, record ``tags``, inline
tags in mixed case), member posts, posts of accounts that members follow, replies at several
depths, quotes, likes/reposts/follows and their deletes (also of records the stream never
showed), deletes of posts with likes, reposts and replies, profile updates, identity and
account events (a handle moving from one account to another among them), one deactivation
(at least 100 events), one account deletion of an active community account (at least 2,000
events, in the second half) and one takedown of a member (at least 20,000 events). Random
choice alone would not reliably produce the rare cases, so they are scripted ("stories")
at fixed fractions of the capture and protected from random deletes.

Output is deterministic for a given (events, seed, start_time_us) on one Python version: one
``random.Random`` drives everything, and the default start is a fixed date.
"""

from __future__ import annotations

import bisect
import gc
import math
import random
import time
from collections import Counter, deque
from typing import Callable

import orjson
from tqdm import tqdm

#: 2026-07-04T14:00:00Z, so that default captures are reproducible.
DEFAULT_START_TIME_US = 1_783_173_600_000_000
MEAN_GAP_US = 1_000  # ~1,000 events/s, like the public Jetstream on an average day
SWELL_RADIANS_PER_US = 2 * math.pi / 60_000_000
MEMBER_HANDLE_SUFFIX = ".cannect.space"
MIN_EVENTS_DEACTIVATION = 100
MIN_EVENTS_ACCOUNT_DELETION = 2_000
MIN_EVENTS_TAKEDOWN = 20_000

POST = "app.bsky.feed.post"
LIKE = "app.bsky.feed.like"
REPOST = "app.bsky.feed.repost"
FOLLOW = "app.bsky.graph.follow"
PROFILE = "app.bsky.actor.profile"
BLOCK = "app.bsky.graph.block"

MEMBER, COMMUNITY, NETWORK = 0, 1, 2

# --------------------------------------------------------------------------- vocabulary

#: How cannabis tags appear in posts; every one lowercased is a configured cannabis tag
#: (tests check this against ``cannect.config.DEFAULT_CANNABIS_TAGS``).
CANNABIS_TAGS = (
    "Cannabis", "Weed", "420", "THC", "CBD", "CannabisCommunity", "Marijuana", "MMJ",
    "MedicalCannabis", "MedicalMarijuana", "Stoner", "Ganja", "Kush", "Hemp", "Edibles",
    "Dispensary", "CannabisCulture", "WeedSky", "CannabisSky", "GrowYourOwn", "Homegrow",
    "Terpenes", "THCa", "Sativa", "Indica",
)
#: Ordinary tags, and near misses that must not count as cannabis tags.
OTHER_TAGS = (
    "photography", "ArtistsOnBluesky", "gardening", "BookSky", "caturday", "news",
    "NowPlaying", "FediPlants", "dogsofbluesky", "MusicSky", "gamedev", "SkyWriters",
    "weeding", "WeedWhacker", "420friendly", "kushbaby", "hempcrete", "4200",
)
COMMUNITY_TEXTS = (
    "Harvest day! Six more weeks of curing before the first taste",
    "Morning sesh with a fresh cup of coffee ☕",
    "Finally trying that new strain everyone keeps talking about 🌿",
    "Glad patients here can finally get their meds without the runaround",
    "Terpene profile on this one is unreal, pure citrus and pine",
    "Week 7 of flower and the trichomes are looking frosty ❄️",
    "Anyone else keep a grow journal? Mine is getting out of hand",
    "Low dose edibles before a long hike, highly recommend",
    "Local shop had a sale, stocked up for the long weekend",
    "Reminder: start low and go slow, especially with edibles",
    "Legalization vote next month, go register 🗳️",
    "Dried and trimmed, smells like fresh strawberries 🍓",
    "Café, soleil et une petite session sur la terrasse",
    "Erste eigene Ernte, ziemlich stolz drauf 🌱",
    "Colheita caseira saiu melhor do que eu esperava",
)
NETWORK_TEXTS = {
    "en": (
        "Just finished the best book I've read all year",
        "Can't believe it's already July, where did the time go",
        "Hot take: pineapple belongs on pizza 🍍",
        "My cat has decided the keyboard is her bed now",
        "Fireworks tonight! Stay safe everyone 🎆",
        "Shipping the new release today, wish us luck",
        "Thread on why the bus network redesign actually worked 🧵",
        "Rain all day, perfect excuse for soup",
        "Does anyone have a good recipe for sourdough?",
        "This song has been stuck in my head for three days",
        "Pulled the weeds out of the garden, finally",
        "Remote work tip: go outside at lunch, seriously",
    ),
    "ja": (
        "今日は暑すぎて何もできない…",
        "新しいカフェに行ってきた☕️ とても良かった",
        "週末は温泉に行きたい",
    ),
    "de": ("Endlich Urlaub! Zwei Wochen ohne Laptop", "Heute Abend gibt es Käsespätzle"),
    "pt": ("Bom dia! Café passado e muito trabalho pela frente", "Alguém viu o jogo ontem?"),
    "es": ("¡Qué calor hace hoy! 🥵", "Mañana empieza el festival, ¿quién va?"),
    "fr": ("Enfin le week-end, on va au marché", "Quelle chaleur aujourd'hui !"),
}
LANG_WEIGHTS = (("en", 62), ("ja", 11), ("pt", 9), ("de", 5), ("es", 5), ("fr", 3))
QUOTABLE_NON_POSTS = ("app.bsky.feed.generator", "app.bsky.graph.list",
                      "app.bsky.graph.starterpack")
DECOY_TEXTS = (
    "Read the FAQ at https://example.org/faq#weed before asking",
    "pulled every weed from the garden (no#weed left)",
    "Track #4200 on the album is my favourite",
)
REPLY_TEXTS = (
    "Totally agree with this", "Haha same 😂", "Where did you get that?", "Congrats!! 🎉",
    "This is the way", "Never thought about it like that", "Looks amazing 😍",
    "Thanks for sharing", "wait what", "+1", "ありがとう！", "Que lindo!",
)
NAME_PARTS_A = (
    "green", "sunny", "misty", "happy", "lazy", "wild", "cosmic", "quiet", "golden", "purple",
    "river", "forest", "city", "night", "sky", "ocean", "maple", "amber", "velvet", "ember",
)
NAME_PARTS_B = (
    "fox", "otter", "leaf", "garden", "owl", "wave", "pine", "moth", "fern", "cloud", "bloom",
    "stone", "sparrow", "lynx", "bud", "meadow", "harbor", "lotus", "cedar", "comet",
)
DISPLAY_NAMES = (
    "Mary Jane", "Green Thumb", "Sam 🌿", "Dr. Leaf", "Kai", "Rosa M.", "The Grow Room",
    "Lena", "Jamal", "Ayo", "Priya", "Tomás", "Hemp Farmer Joe", "Sativa Sue", "Alex",
)
DESCRIPTIONS = (
    "Medical patient, home grower, dog person.",
    "Growing since 2015 🌱 organic living soil",
    "Cannabis educator. Opinions my own.",
    "Dispensary budtender by day, gardener by night",
    "just here for the memes",
    "Photographer 📷 | she/her",
    "",
)


# --------------------------------------------------------------------------- identifiers

_S32 = "234567abcdefghijklmnopqrstuvwxyz"  # base32-sortable, used by TIDs
_PAIRS = [_S32[i >> 5] + _S32[i & 31] for i in range(1024)]


def tid(time_us: int, clock_id: int) -> str:
    """A 13-character TID: 53 bits of microseconds then 10 bits of clock id, sortable."""
    v = (time_us << 10) | (clock_id & 1023)
    return (
        _S32[(v >> 60) & 31] + _PAIRS[(v >> 50) & 1023] + _PAIRS[(v >> 40) & 1023]
        + _PAIRS[(v >> 30) & 1023] + _PAIRS[(v >> 20) & 1023] + _PAIRS[(v >> 10) & 1023]
        + _PAIRS[v & 1023]
    )


_B32 = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lower case, as CIDs use
_B32_PAIRS = [_B32[i >> 5] + _B32[i & 31] for i in range(1024)]
_SHIFTS_260 = tuple(range(250, -1, -10))  # 26 pairs of characters = 260 bits


def _sha256_cid(prefix: str, rng: random.Random) -> str:
    """A CIDv1 with a random sha-256 digest, spelled as base32 without padding.

    ``prefix`` ("bafyrei" for dag-cbor records, "bafkrei" for raw blobs) covers the multibase
    "b" and the first 30 bits of the header; the other 2 header bits are zero, then come the
    256 digest bits and 2 bits of padding: 260 bits, 52 characters. (Hand-rolled because
    ``base64.b32encode`` is pure Python and was the slowest part of generation.)
    """
    bits = rng.getrandbits(256) << 2
    pairs = _B32_PAIRS
    return prefix + "".join([pairs[(bits >> s) & 1023] for s in _SHIFTS_260])


def _record_cid(rng: random.Random) -> str:
    """A record CID (dag-cbor, sha-256): ``bafyrei...``, 59 characters."""
    return _sha256_cid("bafyrei", rng)


def _blob_cid(rng: random.Random) -> str:
    """A blob CID (raw, sha-256): ``bafkrei...``, 59 characters."""
    return _sha256_cid("bafkrei", rng)


def _new_did(rng: random.Random) -> str:
    """``did:plc:`` and 24 base32 characters (120 random bits)."""
    bits = rng.getrandbits(120)
    return "did:plc:" + "".join([_B32_PAIRS[(bits >> s) & 1023] for s in range(110, -1, -10)])


_SECONDS_CACHE: dict[int, str] = {}


def iso(time_us: int, suffix: str = "Z") -> str:
    """Millisecond ISO-8601 UTC; ``suffix`` is ``Z`` or ``+00:00`` (both occur in the wild)."""
    seconds = time_us // 1_000_000
    text = _SECONDS_CACHE.get(seconds)
    if text is None:
        if len(_SECONDS_CACHE) > 100_000:
            _SECONDS_CACHE.clear()
        text = _SECONDS_CACHE[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{(time_us // 1000) % 1000:03d}{suffix}"


def at_uri(did: str, collection: str, rkey: str) -> str:
    return f"at://{did}/{collection}/{rkey}"


class _Post:
    """A post the stream showed, with what later events need to point at it."""

    __slots__ = ("uri", "cid", "author", "_root", "community", "engagement",
                 "deleted", "rkey", "last_repost", "protected")

    def __init__(self, author, rkey, cid, root, community):
        self.author = author
        self.rkey = rkey
        self.uri = at_uri(author, POST, rkey)
        self.cid = cid
        self._root = root  # top post of the thread; None for a top post (no self-cycle)
        self.community = community  # indexed by the rules, as far as the generator knows
        self.engagement = 0  # likes + reposts + replies
        self.deleted = False
        self.last_repost = None  # (uri, cid) for the ``via`` field of likes
        self.protected = False  # part of a scripted story: random deletes leave it alone

    @property
    def root(self) -> "_Post":
        return self._root or self

    def ref(self) -> dict:
        return {"cid": self.cid, "uri": self.uri}


class _Reservoir:
    """A bounded pool of created records, as (did, rkey), to delete later."""

    def __init__(self, rng: random.Random, limit: int):
        self.rng, self.limit, self.items = rng, limit, []

    def add(self, item) -> None:
        if len(self.items) < self.limit:
            self.items.append(item)
        else:
            self.items[self.rng.randrange(self.limit)] = item

    def take(self):
        """Remove and return a random item, or None when empty."""
        items = self.items
        if not items:
            return None
        i = self.rng.randrange(len(items))
        items[i], items[-1] = items[-1], items[i]
        return items.pop()


# --------------------------------------------------------------------------- generator


class _Generator:
    """Holds the simulated network and produces one event per call of ``next_event``."""

    def __init__(self, events: int, seed: int, start_time_us: int):
        self.rng = rng = random.Random(seed)
        self.events = events
        self.now = start_time_us
        self.seq = 31_527_000_000 + rng.randrange(1_000_000)
        self._make_population()
        self.inactive: set[str] = set()  # deleted, taken down or deactivated accounts
        self.community_posts: list[_Post] = []
        self.community_replies: list[_Post] = []
        self.outside_posts: list[_Post] = []
        self.viral: deque[_Post] = deque(maxlen=50)
        self.old_posts = [self._old_post_ref() for _ in range(5_000)]
        self.likes = _Reservoir(rng, 50_000)
        self.community_likes = _Reservoir(rng, 20_000)
        self.reposts = _Reservoir(rng, 20_000)
        self.noise_follows = _Reservoir(rng, 20_000)
        self.member_follows: list[tuple[str, str, str]] = []  # (follower, rkey, subject)
        self.member_follow_pairs: set[tuple[str, str]] = set()
        self.followed_by_members: Counter[str] = Counter()  # non-member -> member followers
        self.followees: list[str] = []
        self.last_post: _Post | None = None
        self.profiles_written: set[str] = set()
        self.protecting = False  # True while a scripted story runs (see ``at``)
        self.pending: deque[Callable[[], dict | None]] = deque()
        self.special: dict[str, str | None] = {
            "deleted_account": None, "takendown_account": None, "deactivated_account": None,
        }
        self.schedule: dict[int, list[Callable[[], dict | None]]] = {}
        self._plan_stories()
        self._actions, self._cumulative = self._action_table()

    # ---- population

    def _make_population(self) -> None:
        rng, n = self.rng, self.events
        accounts = max(1_000, n // 20)
        n_members = max(10, accounts // 100)
        n_community = max(10, accounts // 50)
        self.members = [_new_did(rng) for _ in range(n_members)]
        self.community = [_new_did(rng) for _ in range(n_community)]
        self.network = [_new_did(rng) for _ in range(accounts - n_members - n_community)]
        self.role = {d: MEMBER for d in self.members}
        self.role.update((d, COMMUNITY) for d in self.community)
        self.used_handles: set[str] = set()
        self.handles = {d: self._handle(MEMBER_HANDLE_SUFFIX) for d in self.members}

    def _handle(self, suffix: str) -> str:
        """A new handle, unique in the capture."""
        used = self.used_handles
        rng = self.rng
        while True:
            name = rng.choice(NAME_PARTS_A) + rng.choice(NAME_PARTS_B)
            if rng.random() < 0.5:
                name += str(rng.randrange(10, 1000))
            handle = name + suffix
            if handle not in used:
                used.add(handle)
                return handle

    def handle_of(self, did: str) -> str:
        handle = self.handles.get(did)
        if handle is None:
            handle = self.handles[did] = self._handle(".bsky.social")
        return handle

    def _pick(self, pool: list[str], skew: float = 1.0) -> str:
        """An active account of ``pool``; skew > 1 favours the first (busiest) ones."""
        rng = self.rng
        for _ in range(20):
            did = pool[int(len(pool) * rng.random() ** skew)]
            if did not in self.inactive:
                return did
        return next(d for d in pool if d not in self.inactive)

    def network_account(self) -> str:
        return self._pick(self.network, 2.0)

    def member(self) -> str:
        return self._pick(self.members)

    def community_account(self) -> str:
        return self._pick(self.community, 1.5)

    def insider(self) -> str:
        return self.member() if self.rng.random() < 0.4 else self.community_account()

    # ---- time, envelopes

    def tick(self) -> int:
        """Advance the clock: ~1,000 events/s on average, swelling ±30% over a minute."""
        swell = 1.0 + 0.3 * math.sin(self.now * SWELL_RADIANS_PER_US)
        gap = int(self.rng.expovariate(1.0 / (MEAN_GAP_US * swell))) + 1
        self.now += gap
        return self.now

    def created_at(self) -> str:
        """Client clocks run a little behind the relay; a few clients write ``+00:00``."""
        rng = self.rng
        lag = int(rng.expovariate(1 / 900_000)) + 20_000
        return iso(self.now - lag, "+00:00" if rng.random() < 0.12 else "Z")

    def commit(self, did: str, op: str, collection: str, rkey: str,
               record: dict | None = None, rev: str | None = None) -> dict:
        rng = self.rng
        body = {
            "rev": rev or tid(self.now + int(rng.random() * 400_000), rng.getrandbits(10)),
            "operation": op,
            "collection": collection,
            "rkey": rkey,
        }
        if record is not None:
            body["record"] = record
            body["cid"] = _record_cid(rng)
        return {"did": did, "time_us": self.now, "kind": "commit", "commit": body}

    def new_rkey(self) -> str:
        rng = self.rng
        return tid(self.now - 20_000 - int(rng.random() * 2_000_000), rng.getrandbits(10))

    def old_rkey(self) -> str:
        """An rkey from days to months before the capture: a record the stream never showed."""
        age = self.rng.randrange(3_600_000_000, 200 * 86_400_000_000)
        return tid(self.now - age, self.rng.randrange(1024))

    def _old_post_ref(self) -> dict:
        author = self.network[int(len(self.network) * self.rng.random() ** 2)]
        return {"cid": _record_cid(self.rng), "uri": at_uri(author, POST, self.old_rkey())}

    def _next_seq(self) -> int:
        self.seq += self.rng.randrange(1, 40)
        return self.seq

    def identity(self, did: str, handle: str | None = None) -> dict:
        body = {"did": did, "seq": self._next_seq(), "time": iso(self.now - 4_000)}
        if handle:
            body["handle"] = handle
        return {"did": did, "time_us": self.now, "kind": "identity", "identity": body}

    def account(self, did: str, active: bool = True, status: str | None = None) -> dict:
        body = {"active": active, "did": did, "seq": self._next_seq(),
                "time": iso(self.now - 4_000)}
        if status:
            body["status"] = status
        return {"did": did, "time_us": self.now, "kind": "account", "account": body}

    # ---- post content

    def _lang(self) -> str:
        r = self.rng.random() * 95
        for lang, weight in LANG_WEIGHTS:
            r -= weight
            if r < 0:
                return lang
        return "en"

    def _tags(self, k: int) -> list[str]:
        tags = self.rng.sample(CANNABIS_TAGS, k)
        return [self._vary_case(t) for t in tags]

    def _vary_case(self, tag: str) -> str:
        r = self.rng.random()
        return tag.lower() if r < 0.3 else tag.upper() if r < 0.4 else tag

    def tagged_text(self, body: str, tags: list[str], style: str) -> dict:
        """Text with hashtags and (for the ``facet`` style) facets with UTF-8 byte offsets.

        Styles: ``facet`` (what the official app writes), ``inline`` (tags typed in the text
        by a client that adds no facets) and ``record`` (tags only in the record's ``tags``).
        """
        if style == "record":
            return {"text": body, "tags": [t.lower() for t in tags]}
        text = body.encode()
        facets = []
        for tag in tags:
            text += b" " if self.rng.random() < 0.7 else b"\n"
            start = len(text)
            text += b"#" + tag.encode()
            facets.append({
                "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}],
                "index": {"byteEnd": len(text), "byteStart": start},
            })
        out = {"text": text.decode()}
        if style == "facet":
            out["facets"] = facets
        return out

    def mention_text(self, body: str, did: str) -> dict:
        """A mention of ``did`` in front of ``body``, with its facet."""
        prefix = f"@{self.handle_of(did)}"
        return {
            "text": f"{prefix} {body}",
            "facets": [{
                "features": [{"$type": "app.bsky.richtext.facet#mention", "did": did}],
                "index": {"byteEnd": len(prefix.encode()), "byteStart": 0},
            }],
        }

    def blob(self, mime: str = "image/jpeg") -> dict:
        return {
            "$type": "blob",
            "ref": {"$link": _blob_cid(self.rng)},
            "mimeType": mime,
            "size": self.rng.randrange(20_000, 950_000),
        }

    def images_embed(self) -> dict:
        rng = self.rng
        images = []
        for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
            images.append({
                "alt": rng.choice(("", "", "A photo", "Plants on a windowsill", "Screenshot")),
                "aspectRatio": {"height": rng.randrange(600, 2000),
                                "width": rng.randrange(600, 2000)},
                "image": self.blob(),
            })
        return {"$type": "app.bsky.embed.images", "images": images}

    def external_embed(self) -> dict:
        external = {
            "description": "Read more on the site",
            "title": self.rng.choice(("Local news", "A long read", "Video", "Release notes")),
            "uri": f"https://example.com/a/{self.rng.randrange(10**6)}",
        }
        if self.rng.random() < 0.6:
            external["thumb"] = self.blob()
        return {"$type": "app.bsky.embed.external", "external": external}

    def quote_embed(self, target: dict) -> dict:
        """A quote (embed.record) or a quote with images (embed.recordWithMedia)."""
        if self.rng.random() < 0.7:
            return {"$type": "app.bsky.embed.record", "record": target}
        return {
            "$type": "app.bsky.embed.recordWithMedia",
            "media": self.images_embed(),
            "record": {"$type": "app.bsky.embed.record", "record": target},
        }

    def post_record(self, content: dict, lang: str | None = "en",
                    reply: tuple[dict, dict] | None = None, embed: dict | None = None) -> dict:
        """A post record with keys in the order the app writes them; ``reply`` is
        (parent ref, root ref)."""
        record = {"$type": POST, "createdAt": self.created_at()}
        if embed is not None:
            record["embed"] = embed
        if "facets" in content:
            record["facets"] = content["facets"]
        if lang and self.rng.random() < 0.94:
            record["langs"] = [lang] if self.rng.random() < 0.95 else [lang, "en"]
        if reply is not None:
            record["reply"] = {"parent": reply[0], "root": reply[1]}
        if "tags" in content:
            record["tags"] = content["tags"]
        record["text"] = content["text"]
        return record

    def maybe_media(self, chance: float = 0.2) -> dict | None:
        r = self.rng.random()
        if r < chance:
            return self.images_embed()
        if r < chance + 0.05:
            return self.external_embed()
        return None

    # ---- posts

    def emit_post(self, author: str, record: dict, community: bool,
                  parent: _Post | None = None, rev: str | None = None) -> dict:
        """Build the commit of a new post and remember the post for later events."""
        rkey = self.new_rkey()
        event = self.commit(author, "create", POST, rkey, record, rev)
        root = parent.root if parent else None
        post = _Post(author, rkey, event["commit"]["cid"], root, community)
        post.protected = self.protecting
        if parent is not None:
            parent.engagement += 1
            parent.protected |= self.protecting
        if community:
            self.community_posts.append(post)
            if parent is not None:
                self.community_replies.append(post)
        else:
            self.outside_posts.append(post)
            if len(self.outside_posts) > 30_000:
                del self.outside_posts[:10_000]
        if self.rng.random() < 0.02:
            self.viral.append(post)
        self.last_post = post
        return event

    def tag_post(self, author: str | None = None, style: str | None = None) -> dict:
        """A community post with cannabis tags; sometimes continued as a self-thread."""
        rng = self.rng
        author = author or self.community_account()
        style = style or rng.choices(("facet", "inline", "record"), (60, 25, 15))[0]
        tags = self._tags(rng.choice((1, 1, 2, 2, 3, 4)))
        if rng.random() < 0.2:
            tags.append(rng.choice(OTHER_TAGS))
        content = self.tagged_text(rng.choice(COMMUNITY_TEXTS), tags, style)
        record = self.post_record(content, "en", embed=self.maybe_media(0.35))
        event = self.emit_post(author, record, True)
        if rng.random() < 0.06:
            post, rev = self.last_post, event["commit"]["rev"]
            self.pending.append(lambda: self.reply_to(post, author, rev=rev))
        return event

    def member_post(self) -> dict:
        if self.rng.random() < 0.5:
            return self.tag_post(self.member())
        content = {"text": self.rng.choice(COMMUNITY_TEXTS + NETWORK_TEXTS["en"])}
        record = self.post_record(content, embed=self.maybe_media(0.35))
        return self.emit_post(self.member(), record, True)

    def followee_post(self) -> dict | None:
        """A post without tags by a non-member that a member follows: indexed by rule."""
        rng = self.rng
        for _ in range(5):
            if not self.followees:
                return None
            did = rng.choice(self.followees)
            if self.followed_by_members[did] > 0 and did not in self.inactive:
                content = {"text": rng.choice(NETWORK_TEXTS["en"])}
                record = self.post_record(content, embed=self.maybe_media())
                return self.emit_post(did, record, True)
        return None

    def network_post(self) -> dict:
        rng = self.rng
        lang = self._lang()
        r = rng.random()
        if r < 0.05:
            text, tag = rng.choice(NETWORK_TEXTS["en"]), rng.choice(OTHER_TAGS)
            content = self.tagged_text(text, [tag], "facet")
        elif r < 0.06:
            content = {"text": rng.choice(DECOY_TEXTS)}
        elif r < 0.09:  # a few mention a member: notified, though the post is not indexed
            mentioned = self.member() if r >= 0.085 else self.network_account()
            content = self.mention_text(rng.choice(NETWORK_TEXTS["en"]), mentioned)
        else:
            content = {"text": rng.choice(NETWORK_TEXTS[lang])}
        record = self.post_record(content, lang, embed=self.maybe_media())
        return self.emit_post(self.network_account(), record, False)

    def reply_to(self, parent: _Post, author: str, rev: str | None = None) -> dict | None:
        if parent.deleted or parent.author in self.inactive:
            return None
        content = {"text": self.rng.choice(REPLY_TEXTS)}
        if parent.community and self.rng.random() < 0.15:
            content = self.tagged_text(content["text"], self._tags(1), "facet")
        record = self.post_record(content, "en", reply=(parent.ref(), parent.root.ref()))
        return self.emit_post(author, record, parent.community, parent, rev)

    def community_reply(self) -> dict | None:
        """A reply inside a community thread, often under another reply (deeper threads)."""
        rng = self.rng
        deeper = rng.random() < 0.45 and self.community_replies
        pool = self.community_replies if deeper else self.community_posts
        parent = self.recent(pool, 40)
        if parent is None:
            return None
        author = self.insider() if rng.random() < 0.45 else self.network_account()
        return self.reply_to(parent, author)

    def outside_reply(self) -> dict:
        rng = self.rng
        parent = self.recent(self.outside_posts, 400) if rng.random() < 0.6 else None
        if parent is not None:
            event = self.reply_to(parent, self.network_account())
            if event is not None:
                return event
        target = rng.choice(self.old_posts)  # a post from before the capture
        content = {"text": rng.choice(REPLY_TEXTS)}
        record = self.post_record(content, self._lang(), reply=(target, target))
        return self.commit(self.network_account(), "create", POST, self.new_rkey(), record)

    def quote_post(self) -> dict:
        """Quotes of community posts, outside posts and (rarely) feeds or lists."""
        rng = self.rng
        r = rng.random()
        quoted = self.recent(self.community_posts, 60) if r < 0.4 else None
        if quoted is not None:
            target = quoted.ref()
            author = self.insider() if rng.random() < 0.5 else self.network_account()
            quoted.engagement += 1
        elif r < 0.9:
            target, author = rng.choice(self.old_posts), self.network_account()
        else:
            kind = rng.choice(QUOTABLE_NON_POSTS)
            uri = at_uri(self.network_account(), kind, self.old_rkey())
            target = {"cid": _record_cid(rng), "uri": uri}
            author = self.network_account()
        community = author in self.role and self.role[author] == MEMBER
        content = {"text": rng.choice(NETWORK_TEXTS["en"])}
        record = self.post_record(content, embed=self.quote_embed(target))
        return self.emit_post(author, record, community)

    def post_create(self) -> dict | None:
        r = self.rng.random() * 100
        if r < 3:
            return self.member_post()
        if r < 7:
            return self.tag_post()
        if r < 9:
            return self.followee_post()
        if r < 13:
            return self.community_reply()
        if r < 15:
            return self.quote_post()
        if r < 40:
            return self.outside_reply()
        return self.network_post()

    def post_update(self) -> dict | None:
        """An edited top-level community post (same URI, new content): the index refreshes it."""
        post = self.recent(self.community_posts, 30)
        if post is None or post.root is not post:
            return None
        text = self.rng.choice(COMMUNITY_TEXTS) + " (edited)"
        content = self.tagged_text(text, self._tags(1), "facet")
        event = self.commit(post.author, "update", POST, post.rkey, self.post_record(content))
        post.cid = event["commit"]["cid"]
        return event

    def post_delete(self) -> dict:
        """Deletes favour engaged community posts, so likes, reposts and replies cascade."""
        rng = self.rng
        r = rng.random()
        post = None
        if r < 0.45:
            candidates = [self.recent(self.community_posts, 200) for _ in range(4)]
            candidates = [p for p in candidates if p is not None and not p.protected]
            post = max(candidates, key=lambda p: p.engagement) if candidates else None
        elif r < 0.8:
            post = self.recent(self.outside_posts, 2_000)
        if post is None or post.protected:
            return self.commit(self.network_account(), "delete", POST, self.old_rkey())
        post.deleted = True
        return self.commit(post.author, "delete", POST, post.rkey)

    def recent(self, pool: list[_Post], scale: float) -> _Post | None:
        """A live post of ``pool``, mostly among the last ``scale`` or so (skewed to new)."""
        rng = self.rng
        n = len(pool)
        for _ in range(6):
            if not n:
                return None
            if rng.random() < 0.65:
                i = n - 1 - int(rng.expovariate(1 / scale))
                if i < 0:
                    i = rng.randrange(n)
            else:
                i = rng.randrange(n)
            post = pool[i]
            if not post.deleted and post.author not in self.inactive:
                return post
        return None

    # ---- likes and reposts

    def _subject(self) -> tuple[_Post | None, dict, bool]:
        """What a like or repost points at: (post if seen, subject ref, community?)."""
        rng = self.rng
        r = rng.random()
        post = None
        if r < 0.12:
            post = self.recent(self.community_posts, 150)
        elif r < 0.22 and self.viral:
            post = rng.choice(self.viral)
            if post.deleted or post.author in self.inactive:
                post = None
        elif r < 0.6:
            post = self.recent(self.outside_posts, 300)
        if post is None:
            return None, self.old_posts[int(len(self.old_posts) * rng.random() ** 3)], False
        return post, post.ref(), post.community

    def _engager(self, community: bool) -> str:
        if community and self.rng.random() < 0.35:
            return self.insider()
        r = self.rng.random()
        if r < 0.01:
            return self.member()
        if r < 0.03:
            return self.community_account()
        return self.network_account()

    def like_create(self, liker: str | None = None, post: _Post | None = None) -> dict:
        if post is None:
            post, subject, community = self._subject()
        else:
            subject, community = post.ref(), post.community
        liker = liker or self._engager(community)
        record = {"$type": LIKE, "createdAt": self.created_at(), "subject": subject}
        if post is not None and post.last_repost and self.rng.random() < 0.3:
            record["via"] = post.last_repost
        rkey = self.new_rkey()
        if post is not None:
            post.engagement += 1
            post.protected |= self.protecting
        if not self.protecting:
            (self.community_likes if community else self.likes).add((liker, rkey))
        return self.commit(liker, "create", LIKE, rkey, record)

    def repost_create(self, reposter: str | None = None, post: _Post | None = None) -> dict:
        if post is None:
            post, subject, community = self._subject()
        else:
            subject, community = post.ref(), post.community
        reposter = reposter or self._engager(community)
        rkey = self.new_rkey()
        event = self.commit(reposter, "create", REPOST, rkey,
                            {"$type": REPOST, "createdAt": self.created_at(), "subject": subject})
        if post is not None:
            post.engagement += 1
            post.protected |= self.protecting
            post.last_repost = {"cid": event["commit"]["cid"],
                                "uri": at_uri(reposter, REPOST, rkey)}
        if not self.protecting:
            self.reposts.add((reposter, rkey))
        return event

    def delete_from(self, pool: _Reservoir, collection: str) -> dict:
        """Delete a record the stream showed, or (sometimes) one it never showed."""
        if self.rng.random() >= 0.12:
            for _ in range(4):
                item = pool.take()
                if item is None:
                    break
                if item[0] not in self.inactive:
                    return self.commit(item[0], "delete", collection, item[1])
        return self.commit(self.network_account(), "delete", collection, self.old_rkey())

    def like_delete(self) -> dict:
        pool = self.community_likes if self.rng.random() < 0.3 else self.likes
        return self.delete_from(pool, LIKE)

    def repost_delete(self) -> dict:
        return self.delete_from(self.reposts, REPOST)

    # ---- follows

    def follow(self, follower: str, subject: str) -> dict:
        rkey = self.new_rkey()
        record = {"$type": FOLLOW, "createdAt": self.created_at(), "subject": subject}
        if MEMBER in (self.role.get(follower), self.role.get(subject)):
            if not self.protecting:
                self.member_follows.append((follower, rkey, subject))
            self.member_follow_pairs.add((follower, subject))
            if self.role.get(follower) == MEMBER and subject not in self.role:
                if self.followed_by_members[subject] == 0:
                    self.followees.append(subject)
                self.followed_by_members[subject] += 1
        elif not self.protecting:
            self.noise_follows.add((follower, rkey))
        return self.commit(follower, "create", FOLLOW, rkey, record)

    def follow_create(self) -> dict:
        """Mostly noise between non-members; members follow and are followed too."""
        rng = self.rng
        r = rng.random() * 100
        if r < 78:
            follower, subject = self.network_account(), self.network_account()
        elif r < 86:
            follower, subject = self.network_account(), self.member()
        elif r < 92:  # members follow all kinds of accounts, not only the busiest
            follower, subject = self.member(), self._pick(self.network)
        elif r < 94:
            follower, subject = self.member(), self.member()
        elif r < 96:
            follower, subject = self.member(), self.community_account()
        elif r < 98:
            follower, subject = self.community_account(), self.member()
        else:
            follower, subject = self.community_account(), self.network_account()
        if follower == subject or (follower, subject) in self.member_follow_pairs:
            follower, subject = self.network_account(), self.network_account()
        return self.follow(follower, subject)

    def follow_delete(self) -> dict:
        rng = self.rng
        if rng.random() < 0.4 and self.member_follows:
            i = rng.randrange(len(self.member_follows))
            follower, rkey, subject = self.member_follows[i]
            if follower not in self.inactive and subject not in self.inactive:
                self.member_follows[i] = self.member_follows[-1]
                self.member_follows.pop()
                self.member_follow_pairs.discard((follower, subject))
                if subject in self.followed_by_members and self.role.get(follower) == MEMBER:
                    self.followed_by_members[subject] -= 1
                return self.commit(follower, "delete", FOLLOW, rkey)
        return self.delete_from(self.noise_follows, FOLLOW)

    # ---- profiles, other collections, identity, account

    def profile_update(self, did: str | None = None) -> dict:
        rng = self.rng
        if did is None:
            r = rng.random()
            did = (self.member() if r < 0.4
                   else self.community_account() if r < 0.7 else self.network_account())
        record: dict = {"$type": PROFILE}
        if rng.random() < 0.85:
            record["avatar"] = self.blob()
        if rng.random() < 0.5:
            record["banner"] = self.blob()
        record["createdAt"] = iso(self.now - rng.randrange(86_400_000_000, 400 * 86_400_000_000))
        if rng.random() < 0.8:
            record["description"] = rng.choice(DESCRIPTIONS)
        record["displayName"] = rng.choice(DISPLAY_NAMES)
        # A profile is created once (new accounts); later writes are updates.
        op = "create" if did not in self.profiles_written and rng.random() < 0.1 else "update"
        self.profiles_written.add(did)
        return self.commit(did, op, PROFILE, "self", record)

    def profile_delete(self) -> dict:
        return self.commit(self.community_account(), "delete", PROFILE, "self")

    def other_record(self) -> dict:
        """Blocks and other apps' records: the index must ignore them."""
        rng = self.rng
        did = self.network_account()
        if rng.random() < 0.55:
            record = {"$type": BLOCK, "createdAt": self.created_at(),
                      "subject": self.network_account()}
            return self.commit(did, "create", BLOCK, self.new_rkey(), record)
        collection = rng.choice(("app.bsky.graph.listitem", "app.bsky.feed.threadgate",
                                 "fm.teal.alpha.feed.play", "app.bsky.actor.status"))
        if collection == "app.bsky.actor.status":
            record = {"$type": collection, "createdAt": self.created_at(),
                      "status": "app.bsky.actor.status#live"}
            return self.commit(did, "update", collection, "self", record)
        record = {"$type": collection, "createdAt": self.created_at()}
        return self.commit(did, "create", collection, self.new_rkey(), record)

    def identity_event(self) -> dict:
        """Identity events usually carry no handle; an account event often follows."""
        rng = self.rng
        r = rng.random()
        did = (self.member() if r < 0.03
               else self.community_account() if r < 0.06 else self.network_account())
        handle = self.handle_of(did) if rng.random() < 0.1 else None
        if rng.random() < 0.5:
            self.pending.append(lambda: self.account(did) if did not in self.inactive else None)
        return self.identity(did, handle)

    def account_event(self) -> dict:
        return self.account(self.network_account())

    # ---- action table

    def _action_table(self):
        actions = (
            (self.like_create, 63.5), (self.like_delete, 2.3),
            (self.post_create, 10.0), (self.post_update, 0.05), (self.post_delete, 0.7),
            (self.repost_create, 8.0), (self.repost_delete, 0.4),
            (self.follow_create, 7.0), (self.follow_delete, 1.3),
            (self.other_record, 1.4),
            (self.profile_update, 0.9), (self.profile_delete, 0.01),
            (self.identity_event, 1.4), (self.account_event, 0.9),
        )
        cumulative, total = [], 0.0
        for _, weight in actions:
            total += weight
            cumulative.append(total)
        return [a for a, _ in actions], cumulative

    def random_event(self) -> dict:
        while True:
            i = bisect.bisect(self._cumulative, self.rng.random() * self._cumulative[-1])
            event = self._actions[i]()
            if event is not None:
                return event

    def next_event(self, index: int) -> dict:
        self.tick()
        if index in self.schedule:
            self.pending.extend(self.schedule.pop(index))
        while self.pending:
            event = self.pending.popleft()()
            if event is not None:
                return event
        return self.random_event()

    # ---- scripted stories

    def at(self, fraction: float, action: Callable[[], dict | None]) -> None:
        """Run ``action`` at that point of the capture; what it creates or points at is
        protected from random deletes, so the story plays out as written."""

        def run() -> dict | None:
            self.protecting = True
            try:
                return action()
            finally:
                self.protecting = False

        self.schedule.setdefault(int(self.events * fraction), []).append(run)

    def _plan_stories(self) -> None:
        """Rare situations that random choice would not reliably produce."""
        n = self.events
        if n >= MIN_EVENTS_DEACTIVATION:
            self._plan_deactivation()
        if n >= MIN_EVENTS_ACCOUNT_DELETION:
            self._plan_account_deletion()
            self._plan_deleted_popular_post()
            self._plan_deep_thread()
            self._plan_followee()
            self._plan_handle_move()
        if n >= MIN_EVENTS_TAKEDOWN:
            self._plan_takedown()

    def _plan_deactivation(self) -> None:
        did = self.community[-1]
        self.special["deactivated_account"] = did

        def deactivate():
            self.inactive.add(did)
            return self.account(did, False, "deactivated")

        def reactivate():
            self.inactive.discard(did)
            return self.account(did, True)

        self.at(0.45, deactivate)
        if self.events >= MIN_EVENTS_ACCOUNT_DELETION:
            self.at(0.6, reactivate)

    def _plan_account_deletion(self) -> None:
        """A community account with indexed posts, likes and follows deletes itself."""
        doomed, friend, fan = self.community[0], self.members[0], self.members[1]
        self.special["deleted_account"] = doomed
        posts: list[_Post] = []

        def doomed_post(style):
            def act():
                event = self.tag_post(doomed, style)
                posts.append(self.last_post)
                return event
            return act

        def other_post():
            """A live member post (indexed whatever its content), else the doomed's own."""
            by_members = [p for p in self.community_posts if self.role.get(p.author) == MEMBER]
            return self.recent(by_members, 50) or posts[0]

        steps = (
            (0.01, lambda: self.tag_post(fan)),  # something of a member's to like
            (0.02, doomed_post("facet")),
            (0.04, lambda: self.follow(fan, doomed)),
            (0.06, lambda: self.follow(doomed, friend)),
            (0.08, doomed_post("record")),
            (0.10, lambda: self.like_create(doomed, other_post())),
            (0.12, lambda: self.like_create(self.network_account(), posts[0])),
            (0.14, lambda: self.repost_create(doomed, other_post())),
            (0.16, lambda: self.reply_to(posts[0], self.network_account())),
            (0.18, lambda: self.like_create(fan, posts[-1])),
            (0.20, lambda: self.like_create(doomed, other_post())),
            (0.22, lambda: self.reply_to(other_post(), doomed)),
            (0.24, lambda: self.repost_create(friend, posts[0])),
            (0.30, lambda: self.profile_update(doomed)),
        )
        for fraction, action in steps:
            self.at(fraction, action)

        def delete_account():
            self.inactive.add(doomed)
            return self.account(doomed, False, "deleted")

        self.at(0.65, delete_account)

    def _plan_deleted_popular_post(self) -> None:
        """A member's tag post gets likes, a repost and a reply thread, then is deleted."""
        author = self.members[2]
        box: list[_Post] = []

        def create():
            event = self.tag_post(author, "facet")
            box.append(self.last_post)
            return event

        def reply_deeper():
            parent = box[-1]
            event = self.reply_to(parent, self.member() if len(box) % 2 else self.network_account())
            box.append(self.last_post)
            return event

        def delete():
            box[0].deleted = True
            return self.commit(author, "delete", POST, box[0].rkey)

        steps = (
            (0.25, create), (0.255, lambda: self.like_create(self.network_account(), box[0])),
            (0.26, lambda: self.repost_create(self.network_account(), box[0])),
            (0.265, reply_deeper), (0.27, reply_deeper),
            (0.275, lambda: self.like_create(self.community_account(), box[0])),
            (0.45, delete),
        )
        for fraction, action in steps:
            self.at(fraction, action)

    def _plan_deep_thread(self) -> None:
        """A community thread six replies deep, alternating insiders and outsiders."""
        box: list[_Post] = []

        def root():
            event = self.tag_post(self.community[1], "inline")
            box.append(self.last_post)
            return event

        def deeper():
            author = self.insider() if len(box) % 2 else self.network_account()
            event = self.reply_to(box[-1], author)
            box.append(self.last_post)
            return event

        self.at(0.33, root)
        for k in range(6):
            self.at(0.332 + k * 0.004, deeper)

    def _plan_followee(self) -> None:
        """A member follows an outsider, who then posts without tags (indexed by rule)."""
        member, outsider = self.members[3], self.network[0]

        def plain():
            content = {"text": self.rng.choice(NETWORK_TEXTS["en"])}
            return self.emit_post(outsider, self.post_record(content), True)

        self.at(0.38, lambda: self.follow(member, outsider))
        self.at(0.40, plain)
        self.at(0.42, plain)

    def _plan_handle_move(self) -> None:
        """A handle leaves one community account and is claimed by another."""
        first, second = self.community[2], self.community[3]
        handle = "moving-" + self._handle(".bsky.social")
        self.at(0.30, lambda: self.tag_post(first))
        self.at(0.31, lambda: self.tag_post(second))
        self.at(0.35, lambda: self.identity(first, handle))
        self.at(0.55, lambda: self.identity(second, handle))

    def _plan_takedown(self) -> None:
        """A member with posts, likes and follows is taken down by the moderation service."""
        victim = self.members[4]
        self.special["takendown_account"] = victim
        self.at(0.10, lambda: self.tag_post(victim))
        self.at(0.11, lambda: self.follow(victim, self.network[1]))
        self.at(0.12, lambda: self.follow(self.network_account(), victim))
        self.at(0.13, lambda: self.like_create(victim))

        def take_down():
            self.inactive.add(victim)
            return self.account(victim, False, "takendown")

        self.at(0.75, take_down)


# --------------------------------------------------------------------------- entry point


def _count_key(event: dict) -> str:
    if event["kind"] == "commit":
        commit = event["commit"]
        return f"commit/{commit['collection']}/{commit['operation']}"
    return event["kind"]


def generate_capture(
    out: str,
    events: int,
    seed: int = 0,
    start_time_us: int | None = None,
    progress: bool = False,
) -> dict:
    """Write ``events`` synthetic Jetstream events to ``out`` (JSONL) and ``out.meta.json``.

    Returns the meta dict: seed, events, first/last time_us, members (did and handle, to
    register as Cannect users before ingesting), counts per ``kind/collection/operation``,
    and ``special`` (the DIDs of the deleted, taken-down and deactivated accounts).
    """
    if events < 1:
        raise ValueError("events must be >= 1")
    start = DEFAULT_START_TIME_US if start_time_us is None else start_time_us
    # The generator keeps many small long-lived objects and frees almost nothing; cyclic
    # GC passes over them would cost ~20% of the run and find no garbage.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        meta = _write_capture(out, _Generator(events, seed, start), seed, progress)
    finally:
        if gc_was_enabled:
            gc.enable()
    with open(out + ".meta.json", "wb") as f:
        f.write(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    return meta


def _write_capture(out: str, gen: _Generator, seed: int, progress: bool) -> dict:
    """Write the events in batches; return the meta dict."""
    events = gen.events
    counts: Counter[str] = Counter()
    first_time = last_time = None
    batch: list[bytes] = []
    with open(out, "wb") as f, tqdm(total=events, disable=not progress, unit="ev") as bar:
        for i in range(events):
            event = gen.next_event(i)
            counts[_count_key(event)] += 1
            batch.append(orjson.dumps(event))
            if first_time is None:
                first_time = event["time_us"]
            last_time = event["time_us"]
            if len(batch) == 10_000:
                f.write(b"\n".join(batch) + b"\n")
                batch.clear()
                bar.update(10_000)
        if batch:
            f.write(b"\n".join(batch) + b"\n")
            bar.update(len(batch))
    return {
        "seed": seed,
        "events": events,
        "first_time_us": first_time,
        "last_time_us": last_time,
        "members": [{"did": d, "handle": gen.handles[d]} for d in gen.members],
        "counts": dict(sorted(counts.items())),
        "special": gen.special,
    }
