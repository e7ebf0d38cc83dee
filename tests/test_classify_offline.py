"""The offline classifier (services/classify/offline.py) and its lexicons: behaviour, hostile
input, operators' lexicon files, and accuracy on the hand-labelled gold set. No database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cannect.config import load_settings
from services.classify import lexicon as lexicon_module
from services.classify.lexicon import LexiconError, load
from services.classify.offline import OfflineClassifier
from services.classify.schema import ENUMS, Classification, Failure, PostText

GOLD = Path(__file__).parent / "data" / "gold_posts.jsonl"


@pytest.fixture(scope="module")
def classifier() -> OfflineClassifier:
    return OfflineClassifier()


def one(classifier: OfflineClassifier, text: str) -> Classification:
    outcome = classifier.classify([PostText(key="k", text=text)])
    [result] = outcome.results
    assert isinstance(result, Classification), result
    return result


# ---------- effects and negation ----------

@pytest.mark.parametrize("text, absent, present", [
    ("Blue Dream didn't make me sleepy at all, just relaxed", "sleepy", "relaxed"),
    ("No paranoia with this sativa, super focused", "paranoid", "focused"),
    ("Heute Abend ein Joint: nicht müde, aber total entspannt", "sleepy", "relaxed"),
    ("Fumé un porro, sin paranoia, muy relajado", "paranoid", "relaxed"),
    ("Pas de fatigue avec ce joint, juste détendu", "sleepy", "relaxed"),
    ("Fumei um baseado, sem paranoia nenhuma, fiquei relaxado", "paranoid", "relaxed"),
])
def test_negated_effects_are_not_effects(classifier, text, absent, present):
    result = one(classifier, text)
    assert absent not in result.effects_mentioned
    assert present in result.effects_mentioned


def test_wanted_effects_are_desired_not_felt(classifier):
    result = one(classifier, "Looking for something to help me sleep, any recs for an indica?")
    assert "sleepy" in result.effects_desired
    assert "sleepy" not in result.effects_mentioned
    assert result.intent_type == "asking"
    assert result.post_type == "question"


# ---------- not about cannabis ----------

@pytest.mark.parametrize("text", [
    "My dog Gelato just learned to roll over!! Best good boy",
    "Made a wedding cake for my sister's wedding, three tiers of lemon and raspberry",
    "Caught the northern lights last night from the lake! Long exposure photo",
    "Pineapple Express is still the funniest movie Seth Rogen ever made",
    "Girl Scout cookie season! The troop is selling Thin Mints and Samoas outside Kroger",
    "Purple Haze by Hendrix came on the radio and I had to pull over",
    "GDP growth slowed to 1.2% last quarter according to new figures",
    "Heavy snow tonight, stay off the roads if you can",
    "Smoked a brisket for 14 hours, the bark came out perfect",
    "Joint pain flaring up with this cold weather, heating pad time",
    "Mi perro Runtz cumple 3 años hoy, el mejor compañero del mundo",
    "Runts are my favorite candy",
    "Had a great time at the concert, the band was lit and I was so high on life",
    "Baked cookies and the whole house smells like heaven, rolling out the second batch",
    "Pot roast in the oven, smoke alarm went off twice lol",
    "Shopping cart wheel broke in the parking lot, gas was $4 a gallon",
    "The hash browns at this diner are the best, with a bowl of oatmeal",
    "Took a hit in the stock market today, ouch",
    "To be blunt, the meeting was a waste of time",
    "My knee joint is killing me after that hike",
])
def test_posts_not_about_cannabis(classifier, text):
    result = one(classifier, text)
    assert result.cannabis_related is False
    assert result.product_category == "none"
    assert result.strain_mentioned is None and result.brand_mentioned is None
    assert result.effects_mentioned == () and result.frustrations == ()


@pytest.mark.parametrize("text, strain", [
    ("Smoked some wedding cake last night, so relaxed", "Wedding Cake"),
    ("Northern Lights before bed knocks me out every time, best indica", "Northern Lights"),
    ("Rolling a Pineapple Express joint for the walk", "Pineapple Express"),
    ("Smoking some girl scout cookies tonight, giggly already", "Girl Scout Cookies"),
])
def test_everyday_strain_names_count_with_cannabis_context(classifier, text, strain):
    result = one(classifier, text)
    assert result.cannabis_related is True
    assert result.strain_mentioned == strain


# ---------- names: abbreviations, collisions, typos ----------

@pytest.mark.parametrize("text, strain", [
    ("GSC is my favorite strain", "Girl Scout Cookies"),
    ("GDP before bed, out like a light", "Granddaddy Purple"),
    ("GG4 had me glued to the couch", "Gorilla Glue #4"),
    ("SLH is the only sativa that doesn't make me anxious", "Super Lemon Haze"),
    ("Trainwrek hits hard, smoked a bowl", "Trainwreck"),
    ("Smoked some Zkittles, giggly af", "Zkittlez"),
    ("blue dreem is my favorite strain", "Blue Dream"),
    ("Tryed Grandaddy Purpel last nite and slept 10 hrs", "Granddaddy Purple"),
])
def test_abbreviations_and_typos(classifier, text, strain):
    assert one(classifier, text).strain_mentioned == strain


def test_brand_and_strain_sharing_a_name(classifier):
    both = one(classifier, "Gelato by Cookies is fire")
    assert (both.strain_mentioned, both.brand_mentioned) == ("Gelato", "Cookies")
    nested = one(classifier, "Girl Scout Cookies is my favorite strain")
    assert (nested.strain_mentioned, nested.brand_mentioned) == ("Girl Scout Cookies", None)
    papers = one(classifier, "Raw papers are the only ones I roll with")
    assert papers.brand_mentioned == "Raw" and papers.product_category == "accessory"
    raw_food = one(classifier, "Raw vegan dinner tonight, the salad was great")
    assert raw_food.brand_mentioned is None and raw_food.cannabis_related is False


def test_short_words_are_not_corrected_into_names(classifier):
    assert one(classifier, "weeding the garden all afternoon").strain_mentioned is None
    assert one(classifier, "my rookie season was rough").brand_mentioned is None


# ---------- products, sentiment, intent ----------

@pytest.mark.parametrize("text, category", [
    ("this zaza is loud, smoked a fat j", "flower"),
    ("Stiiizy pod leaking again", "vape"),
    ("dabbed some live rosin on the rig", "concentrate"),
    ("5mg gummies before the movie, perfect", "edible"),
    ("Infused preroll from the dispo hit hard", "pre_roll"),
    ("CBD tincture every night for my back pain", "tincture"),
    ("THC seltzers at a bbq are a game changer", "beverage"),
    ("Germinated my autoflower seeds today", "seeds"),
    ("Just bought a new glass bong", "accessory"),
    ("¿Dónde comprar gomitas de CBD en Madrid?", "edible"),
    ("Die Blüten aus der Apotheke sind zu teuer, Cannabis ist eh legal", "flower"),
])
def test_product_categories(classifier, text, category):
    assert one(classifier, text).product_category == category


def test_sarcasm_and_price_complaints(classifier):
    result = one(classifier, "Oh great, love paying $80 for an eighth 🙄")
    assert result.sentiment == "negative"
    assert "price" in result.frustrations
    assert result.price_mentioned is True and result.price_sentiment == "expensive"
    assert result.intent_type == "complaining"


def test_availability_and_purchase_intent(classifier):
    sold_out = one(classifier, "Every dispensary in town is sold out of Zkittlez, so annoying")
    assert "availability" in sold_out.frustrations and sold_out.sentiment == "negative"
    buying = one(classifier, "Heading to the dispensary after work to pick up some Blue Dream")
    assert buying.purchase_intent >= 60 and buying.purchase_stage == "shopping"
    assert buying.time_of_day == "evening"


def test_time_region_and_legal_context(classifier):
    result = one(classifier, "Wake and bake in Denver with some Durban Poison")
    assert result.time_of_day == "morning"
    assert result.region_hint == "Colorado" and result.legal_context == "legal"
    assert result.is_ritual is True
    assert one(classifier, "Still illegal in Texas, smoking weed on my porch anyway").region_hint == "Texas"


@pytest.mark.parametrize("text, sentiment", [
    ("Tastes amazing, smooth smoke, best eighth all year", "positive"),
    ("This flower is mid and harsh, total waste of money", "negative"),
    ("Das Gras ist sehr gut, super entspannt", "positive"),
    ("La mota está seca, qué estafa", "negative"),
    ("Óleo de cannabis ótimo, recomendo", "positive"),
    ("Ce joint est nul, trop cher", "negative"),
    ("Where is the closest dispensary to downtown?", "neutral"),
])
def test_sentiment(classifier, text, sentiment):
    assert one(classifier, text).sentiment == sentiment


def test_dispensary_name_from_pattern(classifier):
    result = one(classifier, "Picked up an eighth at Green Leaf Dispensary today")
    assert result.dispensary_mentioned == "Green Leaf"


def test_maker_brand_beats_the_chain_that_sold_it(classifier):
    result = one(classifier, "Went to Curaleaf in Tampa, grabbed a Cresco cart for $35")
    assert (result.brand_mentioned, result.dispensary_mentioned) == ("Cresco", "Curaleaf")
    assert result.product_category == "vape" and result.purchase_stage == "post_purchase"
    assert result.region_hint == "Florida" and result.price_mentioned is True


# ---------- contract: never raises, valid, ordered, versioned, deterministic ----------

HOSTILE = [
    "",
    "   \n\t ",
    "🔥" * 300,
    "👩‍👩‍👧‍👦" * 300,
    "weed\x00weed\x00 GSC\x00",
    "gelato " * 5000,
    "a" * 100_000,
    "مرحبا بالحشيش 420 الحشيش قانوني الآن",
    "\u202eDEZIUQ EVOL I\u202c blue dream",
    "\ud800 lone surrogate",
    "? ? ? ! ! ! ... , , ,",
    "$$$$ €€€ 100% 10/10 #### @@@",
    "\u0301\u0301\u0301 combining marks only",
    "ＧＳＣ ｆｕｌｌｗｉｄｔｈ ｗｅｅｄ",
    "didn't didn't not no never",
]


def test_hostile_input_never_raises_and_gives_valid_classifications(classifier):
    posts = [PostText(key=str(i), text=text) for i, text in enumerate(HOSTILE)]
    outcome = classifier.classify(posts)
    assert len(outcome.results) == len(HOSTILE)
    for result in outcome.results:
        assert isinstance(result, Classification)
        assert Classification.model_validate(result.model_dump()) == result
        row = result.row()
        assert row["product_category"] in ENUMS["product_category"]
        assert -100 <= (row["sentiment_score"] or 0) <= 100
        assert 1 <= row["data_richness"] <= 10


def test_a_post_that_is_not_text_is_a_failure_not_an_exception(classifier):
    outcome = classifier.classify([PostText(key="a", text="GSC all day"), PostText(key="b", text=None),
                                   PostText(key="c", text="my dog")])
    first, second, third = outcome.results
    assert isinstance(first, Classification) and first.strain_mentioned == "Girl Scout Cookies"
    assert isinstance(second, Failure) and second.key == "b" and "string" in second.error
    assert isinstance(third, Classification) and third.cannabis_related is False
    assert outcome.model_version == classifier.model_version
    assert classifier.model_version.startswith("offline-lexicon-")


def test_deterministic(classifier):
    texts = [json.loads(line)["text"] for line in GOLD.read_text(encoding="utf-8").splitlines()[:40]]
    first = classifier.classify([PostText(key=str(i), text=t) for i, t in enumerate(texts)]).results
    again = OfflineClassifier().classify([PostText(key=str(i), text=t) for i, t in enumerate(texts)]).results
    assert first == again


# ---------- lexicon files ----------

def test_entities_for_the_pipeline_and_name_resolution():
    lexicon = load()
    strains = {s.name: s for s in lexicon.strains}
    brands = {b.name: b for b in lexicon.brands}
    assert strains["Granddaddy Purple"].kind == "indica" and "gdp" in strains["Granddaddy Purple"].ambiguous
    assert brands["Stiiizy"].kind == "vape"
    assert lexicon.resolve_strain("GDP") == "Granddaddy Purple"
    assert lexicon.resolve_strain("Girl Scout Cookies") == "Girl Scout Cookies"
    assert lexicon.resolve_strain("gelatto") == "Gelato"
    assert lexicon.resolve_brand("stiizy") == "Stiiizy"
    assert lexicon.resolve_brand("Storz and Bickel") == "Storz & Bickel"
    assert lexicon.resolve_strain("my neighbour's cat") is None
    assert lexicon.resolve_brand(None) is None


def test_operator_lexicon_dir_adds_and_overrides_entries(tmp_path, monkeypatch):
    (tmp_path / "local.toml").write_text('''
[strain."Tropical Runtz"]
aliases = ["trop runtz", "tropical runtz"]
type = "hybrid"

[strain."Blue Dream"]
aliases = ["bd"]
type = "sativa"

[brand."Local Farm Co"]
aliases = ["local farm co"]
category = "edible"

[sentiment.local.words]
"chonky" = 2.5
''', encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", "postgresql://localhost/x")
    monkeypatch.setenv("REDIS_URL", "redis://localhost/0")
    monkeypatch.setenv("CLASSIFIER_LEXICON_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.classifier_lexicon_dir == str(tmp_path)
    extended = OfflineClassifier.from_settings(settings)
    assert extended.model_version != OfflineClassifier().model_version

    added = one(extended, "trop runtz from local farm co, chonky nugs")
    assert added.strain_mentioned == "Tropical Runtz" and added.brand_mentioned == "Local Farm Co"
    assert added.sentiment == "positive"
    replaced = next(s for s in extended.lexicon.strains if s.name == "Blue Dream")
    assert replaced.kind == "sativa" and replaced.aliases == ("bd",)  # replaced, not merged
    assert one(extended, "GSC all day").strain_mentioned == "Girl Scout Cookies"  # shipped entries remain


def test_operator_lexicon_can_extend_an_entry_instead_of_replacing_it(tmp_path):
    (tmp_path / "more.toml").write_text('''
[product.flower]
extend = true
terms = ["bammer"]

[strain."Blue Dream"]
extend = true
aliases = ["bdream"]
''', encoding="utf-8")
    extended = OfflineClassifier(lexicon_dir=str(tmp_path))
    assert one(extended, "smoked some bammer weed, harsh").product_category == "flower"
    assert one(extended, "this eighth of flower is fire").product_category == "flower"  # shipped terms kept
    blue = next(s for s in extended.lexicon.strains if s.name == "Blue Dream")
    assert blue.kind == "hybrid" and "bdream" in blue.aliases and "bluedream" in blue.aliases
    assert one(extended, "bdream all day").strain_mentioned == "Blue Dream"


@pytest.mark.parametrize("content, fragments", [
    ('[brand."New Co"]\nextend = true\naliases = ["new co"]\n', ["bad.toml", '[brand."New Co"]', "category"]),
    ('[strain."X"]\nextend = "yes"\n', ["bad.toml", '[strain."X"]', "'extend'"]),
    ("[strain.\"X\"\naliases = [", ["bad.toml", "not valid TOML"]),
    ('[strain."Broken Kush"]\naliases = "broken kush"\n', ["bad.toml", '[strain."Broken Kush"]', "aliases", "list"]),
    ('[strain."Odd"]\naliases = ["odd"]\ntype = "purple"\n', ["bad.toml", '[strain."Odd"]', "type"]),
    ('[brand."Nowhere"]\naliases = ["nowhere"]\ncategory = "shoes"\n', ["bad.toml", '[brand."Nowhere"]', "category"]),
    ('[product.sandwich]\nterms = ["sub"]\n', ["bad.toml", '[product."sandwich"]', "must be one of"]),
    ('[flavours.x]\nterms = ["y"]\n', ["bad.toml", "unknown section [flavours]"]),
    ('[sentiment.x.words]\n"great" = 9\n', ["bad.toml", '[sentiment."x"]', "from -4 to 4"]),
    ('[effect.sleepy]\nterms = ["  "]\n', ["bad.toml", '[effect."sleepy"]', "no words"]),
    ('[topic.cats]\nterms = ["cat"]\n', ["bad.toml", '[topic."cats"]', "'cannabis'"]),
])
def test_bad_lexicon_file_gives_a_clear_error(tmp_path, content, fragments):
    (tmp_path / "bad.toml").write_text(content, encoding="utf-8")
    with pytest.raises(LexiconError) as raised:
        lexicon_module.load(tmp_path)
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_missing_lexicon_dir_is_named(tmp_path):
    with pytest.raises(LexiconError, match="does not exist"):
        lexicon_module.load(tmp_path / "nope")


# ---------- the gold set ----------

def test_gold_set_accuracy():
    """Offline accuracy on the hand-labelled gold set (tests/data/README.md) stays at 0.8 or more."""
    cases = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(cases) >= 150
    results = OfflineClassifier().classify([PostText(key=str(i), text=c["text"]) for i, c in enumerate(cases)])
    for field in ("product_category", "sentiment", "strain_mentioned"):
        right = sum(getattr(r, field) == c["expected"][field] for c, r in zip(cases, results.results))
        assert right / len(cases) >= 0.8, (field, right, len(cases))
