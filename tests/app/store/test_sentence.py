"""Sentences are read against the served schema's attribute phrases, with synonyms, opposites and negation that
governs only its own clause; contradictions and the words not understood are said."""

from __future__ import annotations

import pytest

from app.store import AttributeSpec, ModelSpec
from app.store.sentence import read_sentence
from model import load_schema

MARS = load_schema("mars")
MODEL = ModelSpec("m", "v", "mars", tuple(AttributeSpec(a.name, a.group, a.phrase, 0.5) for a in MARS.attributes))


# sentence | required | excluded | unused | contradictions: what a person typing it means (issue 27's five first)
TABLE = [
    ("a woman not wearing a hat", ["female"], ["hat"], [], []),
    ("woman, not carrying a handbag", ["female"], ["hand_bag"], [], []),
    ("no hat or backpack", [], ["hat", "backpack"], [], []),
    ("a man who doesn't wear a hat", [], ["female", "hat"], [], []),
    ("a woman and a man", [], [], [], ["female"]),
    ("a woman with long hair in a black top and no hat", ["female", "long_hair", "top_black"], ["hat"], [], []),
    (
        "a man in a red shirt and blue jeans carrying a backpack without a hat",
        ["top_red", "bottom_blue", "backpack"],
        ["female", "hat"],
        [],
        [],
    ),
    ("someone walking, short hair, grey trousers", ["motion_walking", "bottom_gray"], ["long_hair"], [], []),
    ("seen from the lateral-back", ["pose_lateral_back"], [], ["seen", "from"], []),
    ("old lady with a handbag wearing a skirt", ["female", "age_old", "hand_bag", "bottom_skirt"], [], [], []),
    ("not a man, long sleeves", ["female"], ["top_short"], [], []),
    ("long_hair top_black", ["long_hair", "top_black"], [], [], []),
    ("a purple unicorn", [], [], ["purple", "unicorn"], []),
    ("neither a hat nor a backpack", [], ["hat", "backpack"], [], []),
    ("a girl without a backpack or a handbag", ["female"], ["backpack", "hand_bag"], [], []),
    ("a man with no hat and a backpack", ["backpack"], ["female", "hat"], [], []),
    ("a woman who isn't running", ["female"], ["motion_running"], [], []),
    ("a person who is not walking", [], ["motion_walking"], [], []),
    ("someone never riding a bike", [], ["motion_riding"], [], []),
    ("a man not in a red top", [], ["female", "top_red"], [], []),
    ("a woman, not", ["female"], [], ["not"], []),
    ("no unicorn", [], [], ["no", "unicorn"], []),
    ("a woman without a hat, carrying a backpack", ["female", "backpack"], ["hat"], [], []),
    ("a guy wearing a cap and not carrying a rucksack", ["hat"], ["female", "backpack"], [], []),
    ("a lady with short hair", ["female"], ["long_hair"], [], []),
    ("not short hair", ["long_hair"], [], [], []),
    ("a man with long hair", ["long_hair"], ["female"], [], []),
    ("a woman in a skirt, not a dress", ["female", "bottom_skirt"], [], ["not", "dress"], []),
    ("a boy in shorts without a backpack", ["bottom_short"], ["female", "backpack"], [], []),
    ("an elderly woman who doesn\u2019t carry a purse", ["female", "age_old"], ["hand_bag"], [], []),
    ("a teen in a white t-shirt and black pants", ["age_teenager", "top_white", "bottom_black"], [], [], []),
    ("a woman and not a woman", [], [], [], ["female"]),
    ("no hat, no backpack, no handbag", [], ["hat", "backpack", "hand_bag"], [], []),
    ("a cyclist in a green jacket", ["motion_riding", "top_green"], [], [], []),
    ("someone standing without a shoulder bag", ["motion_staying"], ["shoulder_bag"], [], []),
    ("a man in long trousers with no bag", [], ["female", "bottom_short"], ["no", "bag"], []),
    ("a woman wearing a blue top or a red top", ["female", "top_blue"], [], ["or", "red", "top"], []),
    ("a kid not running and not walking", ["age_young"], ["motion_running", "motion_walking"], [], []),
    ("short sleeves but no hat", ["top_short"], ["hat"], [], []),
    ("a person in gray, not carrying anything", [], [], ["gray", "not", "anything"], []),
    ("a running man in a yellow coat", ["motion_running", "top_yellow"], ["female"], [], []),
    ("an adult woman with a hat who is not walking", ["female", "age_adult", "hat"], ["motion_walking"], [], []),
    ("a man, a woman", [], [], [], ["female"]),
    ("with a hat and without a hat", [], [], [], ["hat"]),
]


@pytest.mark.parametrize(("sentence", "required", "excluded", "unused", "contradictions"), TABLE)
def test_sentences_are_read_as_people_mean_them(sentence, required, excluded, unused, contradictions):
    reading = read_sentence(sentence, MODEL)
    found = (list(reading.required), list(reading.excluded), list(reading.unused), list(reading.contradictions))
    assert found == (required, excluded, unused, contradictions)


def test_the_reading_follows_the_schema_it_is_given():
    colours = ModelSpec("m", "v", "s", (AttributeSpec("coat_red", "coat", "coat red", 0.5),))
    assert read_sentence("a red coat", colours).required == ("coat_red",)
    assert read_sentence("a red coat", MODEL).required == ("top_red",)  # coat is a top in the MARS schema


# sentence | free text (per plain clause) | unused: words no attribute covers become free text, except in a negated
# clause (CLIP's text embedding cannot negate)
FREE = [
    ("a man carrying a red umbrella", ["red umbrella"], ["red", "umbrella"]),
    ("a woman in a black top with an umbrella and sunglasses", ["umbrella", "sunglasses"], ["umbrella", "sunglasses"]),
    ("a woman without an umbrella", [], ["without", "umbrella"]),
    ("a woman with long hair", [], []),
]


@pytest.mark.parametrize(("sentence", "free", "unused"), FREE)
def test_words_no_attribute_covers_are_free_text_unless_negated(sentence, free, unused):
    reading = read_sentence(sentence, MODEL)
    assert list(reading.free) == free
    assert list(reading.unused) == unused
