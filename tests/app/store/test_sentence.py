"""Sentences are read against the served schema's attribute phrases, with synonyms, opposites and negation, and
the words not understood are said."""

from __future__ import annotations

import pytest

from app.store import AttributeSpec, ModelSpec
from app.store.sentence import read_sentence
from model import load_schema

MARS = load_schema("mars")
MODEL = ModelSpec("m", "v", "mars", tuple(AttributeSpec(a.name, a.group, a.phrase, 0.5) for a in MARS.attributes))


@pytest.mark.parametrize(
    ("sentence", "required", "excluded", "unused"),
    [
        ("a woman with long hair in a black top and no hat", ["female", "long_hair", "top_black"], ["hat"], []),
        (
            "a man in a red shirt and blue jeans carrying a backpack without a hat",
            ["top_red", "bottom_blue", "backpack"],
            ["female", "hat"],
            [],
        ),
        ("someone walking, short hair, grey trousers", ["motion_walking", "bottom_gray"], ["long_hair"], []),
        ("seen from the lateral-back", ["pose_lateral_back"], [], ["seen", "from"]),
        ("old lady with a handbag wearing a skirt", ["female", "age_old", "hand_bag", "bottom_skirt"], [], []),
        ("not a man, long sleeves", ["female"], ["top_short"], []),
        ("long_hair top_black", ["long_hair", "top_black"], [], []),
        ("a purple unicorn", [], [], ["purple", "unicorn"]),
    ],
)
def test_sentences_are_read_as_people_mean_them(sentence, required, excluded, unused):
    reading = read_sentence(sentence, MODEL)
    assert (list(reading.required), list(reading.excluded), list(reading.unused)) == (required, excluded, unused)


def test_the_reading_follows_the_schema_it_is_given():
    colours = ModelSpec("m", "v", "s", (AttributeSpec("coat_red", "coat", "coat red", 0.5),))
    assert read_sentence("a red coat", colours).required == ("coat_red",)
    assert read_sentence("a red coat", MODEL).required == ("top_red",)  # coat is a top in the MARS schema
