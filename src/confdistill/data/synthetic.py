"""A deterministic synthetic sentiment corpus with real linguistic structure (the embedded demo's data).

No dataset may be downloaded or copied into the project, so the demo generates its own binary
text-classification task in the SST-2 format. The corpus is built to be learnable by a pretrained
encoder (every word is ordinary English, almost all of them whole tokens of the MiniLM uncased
WordPiece vocabulary) but *not* by keyword counting: the label depends on negation, on which
clause of a contrast dominates and on the strength of the words, and some examples are genuinely
undecidable. A small student therefore has something to get wrong, and its confidence can drift
from the teacher's.

Grammar
-------
A review is ``[opener] BODY [closer]``, lower-case, 5–40 words. Openers and closers are neutral
sentences about the topic ("i watched this film with my family.", "the hotel is near the
station.") built from a neutral vocabulary that is disjoint from every word with a role below;
topic and domain words (film, hotel, phone, plot, battery, ...) therefore carry no label.

A *clause* has exactly one sentiment head and an optional modifier and negation::

    adjective clause   SUBJECT COPULA [NEG] [MOD] ADJ        the plot is not very original
    noun clause        SUBJECT COPULA [NEG] [MOD-NP] NOUN    the ending was a bit of a mess
    verb clause        PERSON [NEG] [MOD] VERB OBJECT        i did not really enjoy the food

    score(clause) = polarity(head) × strength(head) × modifier × (−1 if negated)

``polarity`` is +1 / −1; ``strength`` is 1 (good, dull) or 2 (superb, terrible); an intensifier
(very, extremely, a real ...) multiplies by 1.5, a downtoner (slightly, somewhat, a bit of a ...)
by 0.5. Negators are ``not``, ``never``, ``hardly`` and ``no``; negated clauses take no downtoner
("not slightly good" is not English). Negation is an exact sign flip, so negating every clause of a
review flips its label.

The BODY combines clauses; the review's score is the sum over its *main* clauses:

    single       C                                   score(C)
    coordination C1 and C2 [and C3]  (also ", and" ";" ". ")   score(C1) + score(C2) [+ score(C3)]
    contrast     A, but B   (also ", yet", "; however,", ". however,")   score(B)  — B dominates
    concessive   although A, B  /  B, although A   (also though, even though, while)   score(B)

``A`` and ``B`` may themselves be coordinations of two clauses (not the concessive ``A``). The
clean label is 1 (positive) when the score is > 0 and 0 when < 0. A score of exactly 0 (a mixed
review whose clauses cancel, "the food was good and the service was bad") is *ambiguous*: its
label is a fixed pseudo-random bit of the sentence's SHA-256, i.e. the text does not determine it
(about 2–3 % of reviews). Finally a ``label_noise`` fraction of labels is flipped at random.

The clean label is a function of the *text* (:func:`clean_label` parses it with the lexicon), and
the generator also scores its own structures (:meth:`Review.score`); the tests check that both
agree, that negation flips, that the clause after "but" decides, and that a bag-of-words model is
clearly above chance but clearly below perfect.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from confdistill.errors import InputError
from confdistill.io import atomic_write, write_json

_T = TypeVar("_T")


def _words(text: str) -> list[str]:
    return text.split()


GRAMMAR_VERSION = 1
TASK_NAME = "SYNTH"
LABEL_NAMES = ("negative", "positive")

INTENSIFIER_FACTOR = 1.5
DOWNTONER_FACTOR = 0.5

# --------------------------------------------------------------------------------------------
# Lexicon. word -> strength (1 mild, 2 strong). Chosen from the MiniLM uncased vocabulary; a few
# common words that WordPiece splits (mediocre, tedious, forgettable) are kept on purpose.
# --------------------------------------------------------------------------------------------
POSITIVE_ADJECTIVES: dict[str, int] = {
    **dict.fromkeys(
        _words(
            "superb brilliant outstanding excellent wonderful fantastic amazing magnificent stunning "
            "flawless terrific exceptional perfect extraordinary spectacular marvelous sublime"
        ),
        2,
    ),
    **dict.fromkeys(
        _words(
            "good nice pleasant decent fine enjoyable solid charming fun lovely clever engaging "
            "satisfying fresh interesting impressive friendly reliable comfortable smooth entertaining "
            "elegant thoughtful memorable beautiful funny generous helpful gripping polished"
        ),
        1,
    ),
}
NEGATIVE_ADJECTIVES: dict[str, int] = {
    **dict.fromkeys(
        _words(
            "terrible awful horrible dreadful disastrous miserable unbearable pathetic disgusting "
            "painful worthless hideous"
        ),
        2,
    ),
    **dict.fromkeys(
        _words(
            "bad dull boring weak bland poor mediocre messy tedious clumsy flat shallow forgettable "
            "predictable noisy dirty rude stale annoying disappointing confusing sloppy lazy awkward "
            "unpleasant ugly silly unreliable uncomfortable lifeless repetitive"
        ),
        1,
    ),
}
POSITIVE_NOUNS: dict[str, int] = {
    **dict.fromkeys(["masterpiece", "triumph", "marvel"], 2),
    **dict.fromkeys(["gem", "joy", "delight", "treat", "pleasure", "success", "winner", "highlight"], 1),
}
NEGATIVE_NOUNS: dict[str, int] = {
    **dict.fromkeys(["disaster", "nightmare", "catastrophe"], 2),
    **dict.fromkeys(
        ["mess", "failure", "bore", "waste", "disappointment", "joke", "flop", "embarrassment"], 1
    ),
}
# verb base form -> (past form, strength)
POSITIVE_VERBS: dict[str, tuple[str, int]] = {
    "love": ("loved", 2),
    "enjoy": ("enjoyed", 1),
    "like": ("liked", 1),
    "admire": ("admired", 1),
    "appreciate": ("appreciated", 1),
    "recommend": ("recommended", 1),
}
NEGATIVE_VERBS: dict[str, tuple[str, int]] = {
    "hate": ("hated", 2),
    "dislike": ("disliked", 1),
    "regret": ("regretted", 1),
}

# Modifiers: every word listed here has that role and no other in the whole grammar.
ADJ_INTENSIFIERS = tuple(
    _words(
        "very really extremely incredibly truly remarkably absolutely thoroughly genuinely "
        "exceptionally so totally utterly particularly especially"
    )
)
ADJ_DOWNTONERS = (
    "slightly",
    "somewhat",
    "fairly",
    "rather",
    "mildly",
    "moderately",
    "a bit",
    "a little",
    "kind of",
    "sort of",
)
VERB_INTENSIFIERS = ("really", "truly", "absolutely", "genuinely", "thoroughly")
VERB_DOWNTONERS = ("somewhat", "mildly", "slightly", "kind of", "sort of")
# Noun-phrase modifiers: "{art}" is replaced by a/an agreeing with the next word.
NOUN_INTENSIFIERS = (
    "{art} real",
    "{art} total",
    "{art} complete",
    "{art} true",
    "{art} absolute",
    "{art} utter",
)
NOUN_DOWNTONERS = ("{art} bit of a", "something of a", "{art} slight", "{art} minor", "kind of a")

INTENSIFIER_WORDS = frozenset(
    ADJ_INTENSIFIERS + VERB_INTENSIFIERS + ("real", "total", "complete", "true", "absolute", "utter")
)
DOWNTONER_WORDS = frozenset(
    {
        "slightly",
        "somewhat",
        "fairly",
        "rather",
        "mildly",
        "moderately",
        "bit",
        "little",
        "kind",
        "sort",
        "something",
        "slight",
        "minor",
    }
)
NEGATORS = frozenset({"not", "never", "hardly", "no"})
CONTRAST_MARKERS = frozenset({"but", "yet", "however"})  # the clause after the marker dominates
CONCESSIVE_MARKERS = frozenset({"although", "though", "while"})  # the clause they introduce is ignored
COORDINATORS = frozenset({"and"})
BOUNDARY_PUNCT = frozenset({",", ";", ".", "!", "?"})

# Copulas: affirmative form -> negated form for each negator that reads naturally with it.
COPULAS: tuple[tuple[str, dict[str, str]], ...] = (
    ("is", {"not": "is not", "never": "is never", "hardly": "is hardly"}),
    ("was", {"not": "was not", "never": "was never", "hardly": "was hardly"}),
    ("seems", {"not": "does not seem"}),
    ("seemed", {"not": "did not seem", "never": "never seemed"}),
    ("feels", {"not": "does not feel"}),
    ("felt", {"not": "did not feel", "never": "never felt"}),
    ("looks", {"not": "does not look"}),
    ("turned out to be", {"not": "turned out not to be", "never": "was never"}),
)
# Copulas that read well before a noun phrase ("the ending was a mess"; not "looks a mess").
NOUN_COPULAS = (0, 1, 3, 5, 7)
# Noun clauses can also be negated with "no": "the film is no masterpiece".
NOUN_COPULA_NO = {"is": "is no", "was": "was no"}

# Topics: domain noun, aspects (singular), verb of experience (past), neutral facts.
DOMAINS: dict[str, dict[str, tuple[str, ...]]] = {
    "film": {
        "names": ("film", "movie"),
        "aspects": (
            "plot",
            "acting",
            "script",
            "soundtrack",
            "ending",
            "dialogue",
            "cast",
            "pacing",
            "direction",
            "humor",
            "cinematography",
            "lighting",
        ),
        "experience": ("watched", "saw", "rented", "streamed"),
        "facts": (
            "the {d} runs about {num} hours",
            "it came out in {year}",
            "the {d} is based on events from {year}",
            "i saw it at the cinema on {day}",
            "the director made {num} films before this one",
        ),
    },
    "book": {
        "names": ("book", "novel"),
        "aspects": (
            "plot",
            "story",
            "writing",
            "prose",
            "ending",
            "narrator",
            "translation",
            "cover",
            "dialogue",
            "opening",
        ),
        "experience": ("read", "finished", "borrowed", "bought"),
        "facts": (
            "the {d} has {num} hundred pages",
            "it was published in {year}",
            "the author lives in {city}",
            "i read it on the train to {city}",
        ),
    },
    "restaurant": {
        "names": ("restaurant", "cafe", "bistro"),
        "aspects": (
            "food",
            "service",
            "staff",
            "menu",
            "dessert",
            "atmosphere",
            "wine",
            "coffee",
            "decor",
            "soup",
            "pasta",
            "kitchen",
        ),
        "experience": ("visited", "tried", "booked", "reviewed"),
        "facts": (
            "the {d} is on the main street",
            "we had a table for {num} on {day}",
            "it opened in {year}",
            "the {d} is a short walk from the station in {city}",
        ),
    },
    "hotel": {
        "names": ("hotel", "resort", "inn"),
        "aspects": (
            "room",
            "staff",
            "breakfast",
            "pool",
            "location",
            "bed",
            "view",
            "lobby",
            "shower",
            "reception",
            "gym",
            "parking",
        ),
        "experience": ("booked", "visited", "chose", "reviewed"),
        "facts": (
            "we stayed for {num} nights in {month}",
            "the {d} is near the station in {city}",
            "the {d} has {num} floors",
            "we arrived on {day} evening",
        ),
    },
    "phone": {
        "names": ("phone", "laptop", "tablet", "camera"),
        "aspects": (
            "battery",
            "screen",
            "keyboard",
            "design",
            "software",
            "speaker",
            "display",
            "interface",
            "case",
            "processor",
            "microphone",
        ),
        "experience": ("bought", "ordered", "used", "tested"),
        "facts": (
            "i have used the {d} for {num} weeks",
            "the {d} arrived on {day}",
            "it comes in black or silver",
            "i ordered it in {month}",
        ),
    },
    "game": {
        "names": ("game", "sequel"),
        "aspects": (
            "gameplay",
            "story",
            "music",
            "soundtrack",
            "difficulty",
            "map",
            "multiplayer",
            "combat",
            "tutorial",
            "interface",
        ),
        "experience": ("played", "finished", "bought", "tried"),
        "facts": (
            "the {d} takes about {num} hours to finish",
            "it was released in {year}",
            "i played it on {day} night",
            "the {d} has {num} chapters",
        ),
    },
    "album": {
        "names": ("album", "record"),
        "aspects": (
            "music",
            "singing",
            "production",
            "sound",
            "band",
            "opening",
            "guitar",
            "drumming",
            "chorus",
            "mixing",
        ),
        "experience": ("heard", "bought", "streamed", "reviewed"),
        "facts": (
            "the {d} is {num} minutes long",
            "it came out in {year}",
            "the band is from {city}",
            "i heard it first in {month}",
        ),
    },
}
PERSONS_PAST = (
    "i",
    "we",
    "my friend",
    "my wife",
    "my husband",
    "my sister",
    "my brother",
    "my partner",
    "my son",
    "my daughter",
    "my colleague",
    "my father",
    "my mother",
)
PERSONS_PRESENT = ("i", "we")
OPENERS = (
    "honestly,",
    "overall,",
    "to be fair,",
    "in my opinion,",
    "for what it is worth,",
    "in short,",
    "frankly,",
    "all in all,",
    "to be honest,",
    "first of all,",
)
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "ten", "twelve")
YEARS = tuple(str(y) for y in range(1995, 2024, 3))
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "march", "april", "june", "july", "august", "october", "december")
CITIES = ("london", "paris", "berlin", "boston", "chicago", "madrid", "dublin", "toronto", "sydney")
COMPANIONS = (
    "with my family",
    "with a friend",
    "last week",
    "last month",
    "on {day}",
    "in {month}",
    "after work",
    "on holiday",
    "for a birthday",
    "with my parents",
)

_TOKEN_RE = re.compile(r"[a-z0-9]+|[,;.!?]")
_PLACEHOLDER_RE = re.compile(r"\{[a-z]+\}")

_SENTIMENT: dict[str, tuple[int, int]] = {}  # word -> (polarity, strength), every inflected form
for _lex, _pol in (
    (POSITIVE_ADJECTIVES, 1),
    (NEGATIVE_ADJECTIVES, -1),
    (POSITIVE_NOUNS, 1),
    (NEGATIVE_NOUNS, -1),
):
    for _w, _s in _lex.items():
        _SENTIMENT[_w] = (_pol, _s)
for _vlex, _pol in ((POSITIVE_VERBS, 1), (NEGATIVE_VERBS, -1)):
    for _base, (_past, _s) in _vlex.items():
        _SENTIMENT[_base] = (_pol, _s)
        _SENTIMENT[_past] = (_pol, _s)


# --------------------------------------------------------------------------------------------
# The clean labeller: a function of the text alone.
# --------------------------------------------------------------------------------------------
def tokenize(sentence: str) -> list[str]:
    """Lower-case word and punctuation tokens of ``sentence`` (the labeller's view of the text)."""
    return _TOKEN_RE.findall(sentence.lower())


def _clause_score(tokens: list[str]) -> float:
    """Score of one clause's tokens: each sentiment word × modifiers before it × (−1 if negated)."""
    total = 0.0
    factor = 1.0
    negated = False
    for tok in tokens:
        if tok in NEGATORS:
            negated = not negated
        elif tok in INTENSIFIER_WORDS:
            factor *= INTENSIFIER_FACTOR
        elif tok in DOWNTONER_WORDS:
            factor *= DOWNTONER_FACTOR
        elif tok in _SENTIMENT:
            polarity, strength = _SENTIMENT[tok]
            total += polarity * strength * factor * (-1.0 if negated else 1.0)
            factor, negated = 1.0, False
    return total


def _segments(tokens: list[str]) -> list[tuple[str | None, list[str]]]:
    """Split tokens into clauses at punctuation and conjunctions: ``[(marker, clause_tokens), ...]``.

    ``marker`` is the conjunction that introduced the clause ("but", "although", "and") or None;
    a contrast marker wins over a coordinator seen at the same boundary ("and yet").
    """
    segments: list[tuple[str | None, list[str]]] = []
    current: list[str] = []
    marker: str | None = None
    pending: str | None = None
    for tok in tokens:
        is_conj = tok in CONTRAST_MARKERS or tok in CONCESSIVE_MARKERS or tok in COORDINATORS
        if tok in BOUNDARY_PUNCT or is_conj:
            if current:
                segments.append((marker, current))
                current, marker = [], None
            if is_conj and not (pending in CONTRAST_MARKERS and tok in COORDINATORS):
                pending = tok
            continue
        if not current:
            marker, pending = pending, None
        current.append(tok)
    if current:
        segments.append((marker, current))
    return segments


def sentence_score(sentence: str) -> float:
    """Signed strength of ``sentence`` under the grammar (> 0 positive, < 0 negative, 0 mixed).

    Only main clauses count: everything before the last contrast marker (but / yet / however) and
    every clause introduced by a concessive marker (although / though / while) is ignored.
    """
    segments = _segments(tokenize(sentence))
    last_contrast = max((i for i, (m, _) in enumerate(segments) if m in CONTRAST_MARKERS), default=0)
    return sum(_clause_score(toks) for m, toks in segments[last_contrast:] if m not in CONCESSIVE_MARKERS)


def _hash_bit(sentence: str) -> int:
    # A fixed coin flip per text for reviews the grammar cannot decide; sha256, not hash(), so it
    # is the same in every process.
    digest = hashlib.sha256(" ".join(tokenize(sentence)).encode()).digest()
    return digest[0] & 1


def clean_label(sentence: str) -> int:
    """The noise-free label of ``sentence``: 1 positive, 0 negative (ambiguous → fixed hash bit)."""
    score = sentence_score(sentence)
    if score > 0:
        return 1
    if score < 0:
        return 0
    return _hash_bit(sentence)


def is_ambiguous(sentence: str) -> bool:
    """True when the sentence's main clauses cancel exactly, so the text does not decide its label."""
    return sentence_score(sentence) == 0


# --------------------------------------------------------------------------------------------
# Structures the generator builds (and can score without parsing).
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clause:
    """One sentiment clause. ``kind`` is "adj", "noun" or "verb"; ``head`` is the lexicon word
    (verb base form); ``modifier`` a template from the modifier lists or None; ``negator`` one of
    not / never / hardly / no or None; ``copula`` indexes :data:`COPULAS` (adj/noun clauses);
    ``past`` selects the verb tense; ``obj`` is a verb clause's object ("the food")."""

    kind: str
    subject: str
    head: str
    modifier: str | None = None
    negator: str | None = None
    copula: int = 0
    past: bool = True
    obj: str = ""

    @property
    def polarity_strength(self) -> tuple[int, int]:
        return _SENTIMENT[self.head]

    def score(self) -> float:
        polarity, strength = self.polarity_strength
        factor = 1.0
        if self.modifier is not None:
            factor = INTENSIFIER_FACTOR if self._modifier_is_intensifier() else DOWNTONER_FACTOR
        return polarity * strength * factor * (-1.0 if self.negator else 1.0)

    def _modifier_is_intensifier(self) -> bool:
        words = self.modifier.replace("{art}", "").split() if self.modifier else []
        return any(w in INTENSIFIER_WORDS for w in words)

    def negated(self) -> Clause:
        """The same clause with its negation toggled (an exact sign flip of :meth:`score`)."""
        # The modifier is kept so that the magnitude is unchanged and a sum of clauses flips too; the
        # generator itself never negates a downtoned clause ("is not slightly dull" reads oddly).
        return replace(self, negator=None if self.negator else "not")

    def render(self) -> str:
        if self.kind == "verb":
            return self._render_verb()
        form, negated_forms = COPULAS[self.copula]
        if self.kind == "noun" and self.negator == "no" and form in NOUN_COPULA_NO:
            cop = NOUN_COPULA_NO[form]
            mod = self.modifier.replace("{art} ", "") if self.modifier else None
            return " ".join(w for w in (self.subject, cop, mod, self.head) if w)
        cop = negated_forms.get(self.negator or "", negated_forms["not"]) if self.negator else form
        if self.kind == "adj":
            return " ".join(w for w in (self.subject, cop, self.modifier, self.head) if w)
        noun_phrase = f"{self.modifier} {self.head}" if self.modifier else f"{{art}} {self.head}"
        return f"{self.subject} {cop} {_articles(noun_phrase)}"

    def _render_verb(self) -> str:
        base = self.head
        past = (POSITIVE_VERBS.get(base) or NEGATIVE_VERBS[base])[0]
        if self.negator == "never":
            verb = " ".join(w for w in ("never", self.modifier, past) if w)
        elif self.negator:
            aux = "did not" if self.past else "do not"
            verb = " ".join(w for w in (aux, self.modifier, base) if w)
        else:
            verb = " ".join(w for w in (self.modifier, past if self.past else base) if w)
        return f"{self.subject} {verb} {self.obj}"


def _articles(phrase: str) -> str:
    """Replace each "{art}" with "a"/"an" agreeing with the following word."""
    words = phrase.split()
    for i, w in enumerate(words):
        if w == "{art}":
            nxt = words[i + 1] if i + 1 < len(words) else ""
            words[i] = "an" if nxt[:1] in "aeiou" and nxt else "a"
    return " ".join(words)


@dataclass(frozen=True)
class Review:
    """A generated review. ``form`` is "single", "coord", "contrast" or "concessive".

    ``main`` are the clauses that decide the label, ``minor`` those that do not (before "but", or
    after "although"); ``joiners`` and ``marker`` are the literal connectives; ``opener``/``closer``
    neutral text. The text is :meth:`render`; its structural score is :meth:`score`.
    """

    form: str
    main: tuple[Clause, ...]
    minor: tuple[Clause, ...] = ()
    main_joiner: str = " and "
    minor_joiner: str = " and "
    marker: str = ""
    marker_first: bool = True
    opener: str = ""
    closer: str = ""

    def score(self) -> float:
        return sum(c.score() for c in self.main)

    def clean_label(self) -> int:
        score = self.score()
        return 1 if score > 0 else 0 if score < 0 else _hash_bit(self.render())

    def negated(self) -> Review:
        """Toggle negation in every main clause: the label flips (unless the review is ambiguous)."""
        return replace(self, main=tuple(c.negated() for c in self.main))

    def render(self) -> str:
        main = self.main_joiner.join(c.render() for c in self.main)
        minor = self.minor_joiner.join(c.render() for c in self.minor)
        if self.form in ("single", "coord"):
            body = main
        elif self.form == "contrast":  # minor, but main
            body = f"{minor}{self.marker}{main}"
        elif self.marker_first:  # although minor, main
            body = f"{self.marker} {minor}, {main}"
        else:  # main, although minor
            body = f"{main}, {self.marker} {minor}"
        parts = [p for p in (self.opener, body + ".", self.closer) if p]
        return " ".join(parts)


# --------------------------------------------------------------------------------------------
# The generator.
# --------------------------------------------------------------------------------------------
# Generator settings (documented in the module docstring; changing them changes GRAMMAR_VERSION).
STRONG_RATE = 0.3  # share of strong heads (superb, terrible)
NEGATION_RATE = 0.2  # share of negated clauses
MODIFIER_RATE = 0.45  # share of clauses with an intensifier or downtoner
AGREE_RATE = 0.6  # a coordinated clause has the polarity of the first one
OPPOSE_RATE = 0.85  # the clause before "but" / after "although" has the opposite polarity
_POOLS: dict[tuple[str, bool, int], tuple[str, ...]] = {
    (kind, positive, strength): tuple(
        w for w, v in lexicon.items() if (v[1] if isinstance(v, tuple) else v) == strength
    )
    for kind, positive, lexicon in (
        ("adj", True, POSITIVE_ADJECTIVES),
        ("adj", False, NEGATIVE_ADJECTIVES),
        ("noun", True, POSITIVE_NOUNS),
        ("noun", False, NEGATIVE_NOUNS),
        ("verb", True, POSITIVE_VERBS),
        ("verb", False, NEGATIVE_VERBS),
    )
    for strength in (1, 2)
}
_FORMS = ("single", "coord", "contrast", "concessive")
_FORM_WEIGHTS = (0.5, 0.2, 0.18, 0.12)
_CONTRAST_JOINERS = (", but ", ", but ", ", yet ", "; however, ", ". however, ")
_COORD_JOINERS = (" and ", " and ", ", and ", "; ", ". ")
_CONCESSIVE = ("although", "although", "though", "even though", "while")


def _rng(seed_words: tuple[int, ...]) -> random.Random:
    """A private ``random.Random`` for a stream; string seeds are hashed with SHA-512 by the standard
    library, so the stream is the same on every platform and Python process."""
    return random.Random("confdistill-synth-" + "-".join(str(int(w)) for w in seed_words))


class _Sampler:
    """Draws grammar elements from one private ``random.Random`` (never global state; the stdlib
    generator is ~20x cheaper per draw than numpy's for these scalar choices)."""

    def __init__(
        self, rng: random.Random, negation_rate: float = NEGATION_RATE, modifier_rate: float = MODIFIER_RATE
    ):
        self.rng = rng
        self.negation_rate = negation_rate
        self.modifier_rate = modifier_rate

    def pick(self, seq: Sequence[_T]) -> _T:
        return seq[self.rng.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def fill(self, template: str, domain: str) -> str:
        return template.format(
            d=self.pick(DOMAINS[domain]["names"]),
            num=self.pick(NUMBERS),
            year=self.pick(YEARS),
            day=self.pick(DAYS),
            month=self.pick(MONTHS),
            city=self.pick(CITIES),
        )

    def subject(self, domain: str, used: set[str]) -> str:
        d = DOMAINS[domain]
        aspect = self.pick(d["aspects"])
        for _ in range(4):  # prefer an aspect not yet talked about in this review
            if aspect not in used:
                break
            aspect = self.pick(d["aspects"])
        used.add(aspect)
        name = self.pick(d["names"])
        return self.pick(
            (
                f"the {aspect}",
                f"the {aspect}",
                f"the {aspect} of this {name}",
                f"the {aspect} here",
                f"its {aspect}",
                f"this {name}",
            )
        )

    def clause(self, domain: str, used: set[str], sign: int) -> Clause:
        """A clause whose score has sign ``sign`` (+1/−1); negated with probability NEGATION_RATE."""
        kind = self.pick(("adj", "adj", "adj", "noun", "verb"))
        negator = None
        if self.chance(self.negation_rate):
            negator = self.pick(
                ("not", "not", "never", "hardly", "no") if kind != "verb" else ("not", "never")
            )
        modifier = None
        if self.chance(self.modifier_rate):
            intens = self.chance(0.5) or negator is not None
            if kind == "adj":
                modifier = self.pick(ADJ_INTENSIFIERS if intens else ADJ_DOWNTONERS)
            elif kind == "noun":
                modifier = self.pick(NOUN_INTENSIFIERS if intens else NOUN_DOWNTONERS)
            else:
                modifier = self.pick(VERB_INTENSIFIERS if intens else VERB_DOWNTONERS)
        head = self.head(kind, positive=(sign > 0) != (negator is not None))
        if kind == "verb":
            past = self.chance(0.7)
            person = self.pick(PERSONS_PAST if past else PERSONS_PRESENT)
            obj = self.subject(domain, used).replace("its ", "the ")
            return Clause("verb", person, head, modifier, negator, past=past, obj=obj)
        copula = self.rng.randrange(len(COPULAS)) if kind == "adj" else self.pick(NOUN_COPULAS)
        if (
            negator is not None
            and negator not in COPULAS[copula][1]
            and not (kind == "noun" and negator == "no" and COPULAS[copula][0] in NOUN_COPULA_NO)
        ):
            negator = "not"
        return Clause(kind, self.subject(domain, used), head, modifier, negator, copula)

    def head(self, kind: str, positive: bool) -> str:
        # Strength is drawn before the word: the lexicons differ in size and in their share of
        # strong words, and drawing from their union would make positive clauses stronger.
        strength = 2 if self.chance(STRONG_RATE) else 1
        return self.pick(_POOLS[(kind, positive, strength)])

    def sign(self) -> int:
        return 1 if self.chance(0.5) else -1

    def clauses(self, k: int, domain: str, used: set[str], sign: int) -> tuple[Clause, ...]:
        """``k`` clauses: the first of sign ``sign``, each next one agreeing w.p. AGREE_RATE."""
        signs = [sign] + [sign if self.chance(AGREE_RATE) else -sign for _ in range(k - 1)]
        return tuple(self.clause(domain, used, s) for s in signs)

    def neutral(self, domain: str) -> str:
        d = DOMAINS[domain]
        if self.chance(0.5):
            person = self.pick(PERSONS_PAST)
            text = (
                f"{person} {self.pick(d['experience'])} this {self.pick(d['names'])} {self.pick(COMPANIONS)}"
            )
        else:
            text = self.pick(d["facts"])
        return self.fill(text, domain) + "."

    def review(self, domain: str) -> Review:
        used: set[str] = set()
        form = self.rng.choices(_FORMS, weights=_FORM_WEIGHTS)[0]
        opener = ""
        if self.chance(0.35):
            opener = self.neutral(domain)
        if self.chance(0.3):
            opener = (opener + " " + self.pick(OPENERS)).strip()
        closer = self.neutral(domain) if self.chance(0.25) else ""
        sign = self.sign()
        if form == "single":
            return Review("single", self.clauses(1, domain, used, sign), opener=opener, closer=closer)
        if form == "coord":
            k = 3 if self.chance(0.2) else 2
            return Review(
                "coord",
                self.clauses(k, domain, used, sign),
                main_joiner=self.pick(_COORD_JOINERS),
                opener=opener,
                closer=closer,
            )
        # "but" and "although" usually join clauses of opposite polarity; sometimes they do not.
        minor_sign = -sign if self.chance(OPPOSE_RATE) else sign
        if form == "contrast":
            minor = self.clauses(2 if self.chance(0.2) else 1, domain, used, minor_sign)
            main = self.clauses(2 if self.chance(0.2) else 1, domain, used, sign)
            return Review(
                "contrast",
                main,
                minor,
                main_joiner=" and ",
                minor_joiner=" and ",
                marker=self.pick(_CONTRAST_JOINERS),
                opener=opener,
                closer=closer,
            )
        marker = self.pick(_CONCESSIVE)
        marker_first = marker == "while" or self.chance(0.5)  # "B, while A" would read as "whereas"
        main = self.clauses(2 if self.chance(0.2) else 1, domain, used, sign)
        return Review(
            "concessive",
            main,
            self.clauses(1, domain, used, minor_sign),
            marker=marker,
            marker_first=marker_first,
            opener=opener,
            closer=closer,
        )


MIN_WORDS = 5
MAX_WORDS = 40


def _word_count(text: str) -> int:
    return sum(1 for t in tokenize(text) if t not in BOUNDARY_PUNCT)


def iter_reviews(seed_words: tuple[int, ...]) -> Iterator[Review]:
    """Endless, deterministic stream of reviews of 5–40 words for the seed words ``seed_words``."""
    sampler = _Sampler(_rng(seed_words))
    domains = tuple(DOMAINS)
    while True:
        review = sampler.review(sampler.pick(domains))
        if MIN_WORDS <= _word_count(review.render()) <= MAX_WORDS:
            yield review


def _check_args(n: int, label_noise: float, name: str = "n") -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise InputError(f"{name} must be a non-negative integer, got {n!r}")
    if not (isinstance(label_noise, float | int) and 0.0 <= float(label_noise) <= 0.5):
        raise InputError(f"label_noise must be a fraction in [0, 0.5], got {label_noise!r}")


def _noisy(labels: list[int], label_noise: float, seed_words: tuple[int, ...]) -> list[int]:
    # One uniform draw per example from its own stream: the texts do not depend on the noise
    # setting, and the flipped set for a smaller noise is a subset of that for a larger one.
    rng = _rng((*seed_words, 7))
    return [1 - y if rng.random() < label_noise else y for y in labels]


def generate_examples(n: int, seed: int, *, label_noise: float = 0.05) -> list[tuple[str, int]]:
    """``n`` (sentence, label) pairs, label 1 = positive, 0 = negative; deterministic for ``seed``.

    Labels are the clean labels (:func:`clean_label` of the sentence) with a ``label_noise``
    fraction flipped at random (independently per example). The sentences do not depend on
    ``label_noise``; duplicates are possible (use :func:`write_synthetic_glue` for deduplicated splits).
    """
    _check_args(n, label_noise)
    stream = iter_reviews((int(seed), 0))
    texts = [next(stream).render() for _ in range(n)]
    labels = _noisy([clean_label(t) for t in texts], float(label_noise), (int(seed), 1))
    return list(zip(texts, labels, strict=True))


def _unique_split(seed_words: tuple[int, ...], n: int, exclude: set[str]) -> list[str]:
    out: list[str] = []
    seen = set(exclude)
    stream = iter_reviews(seed_words)
    # The grammar has ~1e9 surface forms, so collisions are rare; the bound only guards against a
    # future grammar too small for the requested size.
    for _ in range(50 * n + 1000):
        if len(out) == n:
            break
        text = next(stream).render()
        if text not in seen:
            seen.add(text)
            out.append(text)
    else:
        if len(out) < n:
            raise InputError(f"the synthetic grammar cannot produce {n} distinct sentences")
    return out


def write_synthetic_glue(
    out_dir: str | Path,
    n_train: int = 1500,
    n_dev: int = 500,
    seed: int = 0,
    label_noise: float = 0.05,
) -> Path:
    """Write the corpus as an SST-2-format task folder ``out_dir/SYNTH/{train,dev}.tsv``.

    Each file has the header ``sentence\\tlabel`` and one example per line (lower-case, no tabs or
    newlines inside sentences). Train and dev come from independent streams derived from ``seed``;
    sentences are unique within and across the splits. Both splits carry ``label_noise`` (like real
    data). Also writes ``README.md`` (the grammar and settings) and ``meta.json`` (settings, counts,
    measured noise and ambiguity rates). All files are written atomically. Returns the task folder.
    """
    _check_args(n_train, label_noise, "n_train")
    _check_args(n_dev, label_noise, "n_dev")
    task_dir = Path(out_dir) / TASK_NAME
    train = _unique_split((int(seed), 10), n_train, set())
    dev = _unique_split((int(seed), 20), n_dev, set(train))
    meta: dict = {
        "generator": "confdistill.data.synthetic",
        "grammar_version": GRAMMAR_VERSION,
        "task": TASK_NAME,
        "format": "SST-2 (sentence<TAB>label, header row)",
        "label_names": list(LABEL_NAMES),
        "seed": int(seed),
        "label_noise": float(label_noise),
        "splits": {},
    }
    for name, texts, noise_words in (("train", train, (int(seed), 11)), ("dev", dev, (int(seed), 21))):
        clean = [clean_label(t) for t in texts]
        labels = _noisy(clean, float(label_noise), noise_words)
        with atomic_write(task_dir / f"{name}.tsv") as fh:
            fh.write("sentence\tlabel\n")
            for text, label in zip(texts, labels, strict=True):
                fh.write(f"{text}\t{label}\n")
        n = max(len(texts), 1)
        meta["splits"][name] = {
            "file": f"{name}.tsv",
            "n": len(texts),
            "positive_fraction": round(sum(labels) / n, 4),
            "flipped_fraction": round(sum(a != b for a, b in zip(clean, labels, strict=True)) / n, 4),
            "ambiguous_fraction": round(sum(is_ambiguous(t) for t in texts) / n, 4),
            "mean_words": round(sum(_word_count(t) for t in texts) / n, 2),
        }
    with atomic_write(task_dir / "README.md") as fh:
        fh.write(f"# {TASK_NAME}: synthetic sentiment corpus\n\n")
        fh.write(
            f"Generated by `confdistill.data.synthetic.write_synthetic_glue(out_dir, n_train={n_train}, "
            f"n_dev={n_dev}, seed={seed}, label_noise={label_noise})` (grammar version {GRAMMAR_VERSION}). "
            "Labels: 0 = negative, 1 = positive. Measured rates are in `meta.json`.\n\n"
        )
        fh.write(describe_grammar())
    write_json(task_dir / "meta.json", meta)
    return task_dir


def describe_grammar() -> str:
    """The grammar, as Markdown (the module docstring's "Grammar" section)."""
    doc = __doc__ or ""
    start = doc.index("Grammar\n-------")
    return "## Grammar\n" + doc[start + len("Grammar\n-------") :].rstrip() + "\n"


def vocabulary() -> set[str]:
    """Every word the generator can emit (lexicon, modifiers, topics, neutral templates)."""
    words: set[str] = set(_SENTIMENT) | INTENSIFIER_WORDS | DOWNTONER_WORDS | NEGATORS
    words |= CONTRAST_MARKERS | CONCESSIVE_MARKERS | COORDINATORS
    texts: list[str] = [
        *ADJ_DOWNTONERS,
        *VERB_DOWNTONERS,
        *NOUN_INTENSIFIERS,
        *NOUN_DOWNTONERS,
        *PERSONS_PAST,
        *OPENERS,
        *NUMBERS,
        *YEARS,
        *DAYS,
        *MONTHS,
        *CITIES,
        *COMPANIONS,
        *_CONTRAST_JOINERS,
        *_COORD_JOINERS,
        *_CONCESSIVE,
        "a an the this its of here",
        *(c for c, _ in COPULAS),
        *(f for _, forms in COPULAS for f in forms.values()),
        *NOUN_COPULA_NO.values(),
        "do did",
    ]
    for d in DOMAINS.values():
        texts += [*d["names"], *d["aspects"], *d["experience"], *d["facts"]]
    for t in texts:
        words |= {w for w in tokenize(_PLACEHOLDER_RE.sub(" ", t)) if w not in BOUNDARY_PUNCT}
    return words


def neutral_vocabulary() -> set[str]:
    """Words of the topic / filler templates: none of them may have a sentiment or structural role."""
    texts: list[str] = [*PERSONS_PAST, *OPENERS, *NUMBERS, *YEARS, *DAYS, *MONTHS, *CITIES, *COMPANIONS]
    for d in DOMAINS.values():
        texts += [*d["names"], *d["aspects"], *d["experience"], *d["facts"]]
    return {w for t in texts for w in tokenize(_PLACEHOLDER_RE.sub(" ", t)) if w not in BOUNDARY_PUNCT}
