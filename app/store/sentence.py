"""Reading a sentence ("a woman with long hair in a black top and no hat") as required and excluded attributes.

Built from the schema itself: each attribute is matched by the words of its phrase in any order (``top black`` by
"black top"; a name typed as such, "long_hair", reads as "long hair"), after everyday words are mapped onto the
schema's (a small table of synonyms: garments onto top/bottom, "grey" onto gray, "woman" onto female, "man" onto
not female...). The sentence is cut into clauses at break words ("and", "with", "in", "wearing", "who", commas...).
A negation ("no", "not", "without", "never", "neither", "nor", "...n't") starts a clause of its own and excludes
what that clause names, nothing before it: "a woman not wearing a hat" requires female and excludes hat. It carries
across a break that comes before anything it could govern ("not wearing a hat", "doesn't wear a hat") and along an
"or"/"nor" list ("no hat or backpack" excludes both); any other break ends it. A plain "or" ("a blue or a red
top") is not read: a search requires all it asks, so the alternative comes back unused. An attribute matches when
every word of its phrase is in one clause; when one match's words contain another's ("lateral-back" and "back"),
the longer wins. What the sentence both requires and excludes ("a woman and a man") is neither, and is reported as a
contradiction; words that neither match nor are common filler, and a negation that governs nothing, come back as
``unused``: the user sees how the sentence was read, and the reader does not guess. The unused words of a plain
clause (neither negated nor an alternative) are also ``free``: what a model with a CLIP text tower can rank by
(``app.store.text_search``); a negated clause's are not (CLIP's text embedding does not negate: "without an
umbrella" embeds close to "umbrella").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
NEGATIONS = {"no", "not", "without", "never", "neither", "nor", "none"}
LISTS = {"or", "nor"}  # a negation carries along them: "no hat or backpack"
BREAKS = {
    "and", "with", "in", "wear", "wears", "wearing", "who", "which", "but", "has", "have", "having", "carry",
    "carries", "carrying", "holding", "or", "plus",
}  # fmt: skip
FILLER = {
    "a", "an", "the", "person", "people", "someone", "somebody", "pedestrian", "of", "on", "is", "are", "dressed",
    "clothes", "colour", "color", "coloured", "colored", "their", "his", "her", "at", "to", "that", "some",
}  # fmt: skip
WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?(?:-[a-z]+)*|[,;.]")


@dataclass(frozen=True)
class Reading:
    required: tuple[str, ...]
    excluded: tuple[str, ...]
    unused: tuple[str, ...]
    contradictions: tuple[str, ...] = ()  # both required and excluded by the sentence: left out of both
    free: tuple[str, ...] = ()  # the unused words of each plain clause, one text per clause, in sentence order


@dataclass
class Clause:
    words: list[str] = field(default_factory=list)
    negation: str | None = None  # the word that negates the clause
    alternative: bool = False  # after a plain "or": a search cannot ask for one thing or another

    def governs_nothing_yet(self) -> bool:
        return self.negation is not None and all(word in FILLER for word in self.words)


def read_sentence(sentence: str, model: ModelSpec) -> Reading:
    vocabulary = {a.name: _words(a.phrase) | set(a.name.split("_")) for a in model.attributes}
    phrases = {a.name: _words(a.phrase) for a in model.attributes}
    required: list[str] = []
    excluded: list[str] = []
    unused: list[str] = []
    free: list[str] = []
    for clause in _clauses(TOKEN.findall(sentence.lower().replace("\u2019", "'"))):
        if clause.alternative:  # not read: requiring both would be a guess
            unused += ["or", *(word for word in clause.words if _unused(word, set()))]
            continue
        words, opposites = _normalised(clause.words)
        negated = clause.negation is not None
        matched = _matches(words, phrases)
        opposed = _matches(opposites, phrases)
        for name, excluding in [(n, negated) for n in matched] + [(n, not negated) for n in opposed]:
            (excluded if excluding else required).append(name)
        if clause.negation is not None and not matched + opposed:
            unused.append(clause.negation)  # a negation of nothing understood: said, not guessed at
        used = set().union(*(vocabulary[name] for name in matched + opposed))
        pairs = zip(clause.words, clause.words[1:], strict=False)
        paired = {word for pair in pairs if pair in OPPOSITES for word in pair}
        unread = [w for w in clause.words if w not in paired and _unused(w, used)]
        unused += unread
        if unread and clause.negation is None:
            free.append(" ".join(unread))
    contradictions = tuple(name for name in dict.fromkeys(required) if name in excluded)
    return Reading(
        tuple(name for name in dict.fromkeys(required) if name not in contradictions),
        tuple(name for name in dict.fromkeys(excluded) if name not in contradictions),
        tuple(dict.fromkeys(unused)),
        contradictions,
        tuple(dict.fromkeys(free)),
    )


def _negation(token: str) -> bool:
    return token in NEGATIONS or token.endswith("n't")


def _clauses(tokens: list[str]) -> list[Clause]:
    clauses = [Clause()]
    for token in tokens:
        current = clauses[-1]
        if _negation(token):
            clauses.append(Clause(negation=token))
        elif token in BREAKS or not token[0].isalpha():
            if current.governs_nothing_yet():  # "not wearing a hat": the negation governs what follows
                continue
            carried = current.negation if token in LISTS else None  # "no hat or backpack"
            clauses.append(Clause(negation=carried, alternative=token == "or" and carried is None))
        else:
            current.words.append(token)
    return [clause for clause in clauses if clause.words or clause.negation is not None]


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
    if word in FILLER or word in BREAKS or _negation(word):
        return False
    mapped = set(SYNONYMS.get(word, word).split()) | set(word.split("-"))
    return not (mapped & used)


def with_reading(
    required: tuple[str, ...], excluded: tuple[str, ...], reading: Reading
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Attributes asked by name, then those the sentence added (each once, in the order asked)."""
    return tuple(dict.fromkeys(required + reading.required)), tuple(dict.fromkeys(excluded + reading.excluded))
