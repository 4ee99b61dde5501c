"""Reading a sentence ("a woman with long hair in a black top and no hat") as required and excluded attributes.

Built from the schema itself: each attribute is matched by the words of its phrase in any order (``top black`` by
"black top"; a name typed as such, "long_hair", reads as "long hair"), after everyday words are mapped onto the
schema's (a small table of synonyms: garments onto top/bottom, "grey" onto gray, "woman" onto female, "man" onto
not female...). The sentence is cut into clauses at "and", "with", "in", "wearing", commas...; a clause with "no",
"not" or "without" excludes what it names. An attribute matches when every word of its phrase is in one clause;
when one match's words contain another's ("lateral-back" and "back"), the longer wins. Words that neither match
nor are common filler come back as ``unused``, so the user sees how the sentence was read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .records import ModelSpec

# Everyday words onto the schema's words; a value of several words stands for all of them.
SYNONYMS = {
    "woman": "female",
    "women": "female",
    "lady": "female",
    "girl": "female",
    "female": "female",
    "man": "no female",
    "men": "no female",
    "male": "no female",
    "guy": "no female",
    "boy": "no female",
    "grey": "gray",
    "violet": "purple",
    "navy": "blue",
    "shirt": "top",
    "tshirt": "top",
    "t-shirt": "top",
    "blouse": "top",
    "sweater": "top",
    "jumper": "top",
    "hoodie": "top",
    "jacket": "top",
    "coat": "top",
    "dress": "top",
    "trousers": "bottom",
    "pants": "bottom",
    "jeans": "bottom",
    "skirt": "bottom skirt",
    "shorts": "bottom short",
    "sleeveless": "top short",
    "cap": "hat",
    "beanie": "hat",
    "handbag": "hand bag",
    "purse": "hand bag",
    "rucksack": "backpack",
    "standing": "staying",
    "cycling": "riding",
    "bike": "riding",
    "bicycle": "riding",
    "cyclist": "riding",
    "elderly": "old",
    "child": "young",
    "kid": "young",
    "teen": "teenager",
}
# Word pairs that mean the opposite of an attribute: read as its negation.
OPPOSITES = {
    ("short", "hair"): "no long hair",
    ("long", "sleeves"): "no top short",
    ("short", "sleeves"): "top short",
    ("long", "trousers"): "no bottom short",
    ("long", "pants"): "no bottom short",
}
NEGATIONS = {"no", "not", "without", "never", "nor"}
BREAKS = {"and", "with", "in", "wearing", "wears", "who", "but", "has", "having", "carrying", "or", "plus"}
FILLER = {
    "a", "an", "the", "person", "people", "someone", "somebody", "pedestrian", "of", "on", "is", "are", "dressed",
    "clothes", "colour", "color", "coloured", "colored", "their", "his", "her", "at", "to", "that", "some",
}  # fmt: skip
WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
TOKEN = re.compile(r"[a-z]+(?:-[a-z]+)*|[,;.]")


@dataclass(frozen=True)
class Reading:
    required: tuple[str, ...]
    excluded: tuple[str, ...]
    unused: tuple[str, ...]


def read_sentence(sentence: str, model: ModelSpec) -> Reading:
    vocabulary = {a.name: _words(a.phrase) | set(a.name.split("_")) for a in model.attributes}
    phrases = {a.name: _words(a.phrase) for a in model.attributes}
    required: list[str] = []
    excluded: list[str] = []
    unused: list[str] = []
    for clause in _clauses(TOKEN.findall(sentence.lower())):
        words, opposites = _normalised(clause)
        negated = bool(set(clause) & NEGATIONS)
        matched = _matches(words, phrases)
        opposed = _matches(opposites, phrases)
        for name, excluding in [(n, negated) for n in matched] + [(n, not negated) for n in opposed]:
            target, other = (excluded, required) if excluding else (required, excluded)
            if name not in target and name not in other:
                target.append(name)
        used = set().union(*(vocabulary[name] for name in matched + opposed))
        paired = {word for pair in zip(clause, clause[1:], strict=False) if pair in OPPOSITES for word in pair}
        unused += [w for w in clause if w not in paired and _unused(w, used)]
    return Reading(tuple(required), tuple(excluded), tuple(dict.fromkeys(unused)))


def _clauses(tokens: list[str]) -> list[list[str]]:
    clauses: list[list[str]] = [[]]
    for token in tokens:
        if token in BREAKS or token in NEGATIONS - {"no", "not"} or not token[0].isalpha():
            clauses.append([])
        if token[0].isalpha():
            clauses[-1].append(token)
    return [clause for clause in clauses if clause]


def _normalised(clause: list[str]) -> tuple[set[str], set[str]]:
    """The clause's words in the schema's terms, and the words of attributes it names the opposite of ("man":
    not female, "short hair": not long hair)."""
    words: set[str] = set()
    opposites: set[str] = set()
    pairs = {OPPOSITES[pair] for pair in zip(clause, clause[1:], strict=False) if pair in OPPOSITES}
    words |= set(clause)  # a schema of its own may name what the synonyms map away ("coat")
    for mapped in [SYNONYMS.get(word, word) for word in clause] + sorted(pairs):
        meaning = mapped.split()
        if meaning[0] == "no":
            opposites |= set(meaning[1:])
        else:
            words |= set(meaning) | set(mapped.replace("-", " ").split())
    return words, opposites


def _matches(words: set[str], phrases: dict[str, set[str]]) -> list[str]:
    found = [name for name, phrase in phrases.items() if phrase <= words]
    # The longer phrase wins over one it contains: "lateral-back" is not also "back".
    return [name for name in found if not any(phrases[name] < phrases[other] for other in found)]


def _words(phrase: str) -> set[str]:
    return set(WORD.findall(phrase.lower().replace("-", " "))) | set(WORD.findall(phrase.lower()))


def _unused(word: str, used: set[str]) -> bool:
    if word in FILLER or word in BREAKS or word in NEGATIONS:
        return False
    mapped = set(SYNONYMS.get(word, word).split()) | set(word.split("-"))
    return not (mapped & used)


def with_reading(
    required: tuple[str, ...], excluded: tuple[str, ...], reading: Reading
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Attributes asked by name, then those the sentence added (each once, in the order asked)."""
    return tuple(dict.fromkeys(required + reading.required)), tuple(dict.fromkeys(excluded + reading.excluded))
