"""The embedded synthetic corpus: determinism, balance, noise, linguistic structure, vocabulary."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from confdistill.data import synthetic as syn
from confdistill.data.synthetic import (
    Review,
    clean_label,
    generate_examples,
    is_ambiguous,
    iter_reviews,
    sentence_score,
    tokenize,
    write_synthetic_glue,
)
from confdistill.errors import InputError


def _reviews(n: int, seed: int = 0) -> list[Review]:
    stream = iter_reviews((seed, 99))
    return [next(stream) for _ in range(n)]


def _read_tsv(path: Path) -> tuple[str, list[tuple[str, int]]]:
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""  # file ends with a newline, no blank rows inside
    rows = []
    for line in lines[1:-1]:
        cells = line.split("\t")
        assert len(cells) == 2, line
        rows.append((cells[0], int(cells[1])))
    return lines[0], rows


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_examples_different_seed_different() -> None:
    a = generate_examples(300, seed=3)
    assert a == generate_examples(300, seed=3)
    b = generate_examples(300, seed=4)
    assert sum(x[0] != y[0] for x, y in zip(a, b, strict=True)) > 250


def test_write_is_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    d1 = write_synthetic_glue(tmp_path / "a", n_train=200, n_dev=50, seed=1)
    d2 = write_synthetic_glue(tmp_path / "b", n_train=200, n_dev=50, seed=1)
    d3 = write_synthetic_glue(tmp_path / "c", n_train=200, n_dev=50, seed=2)
    for name in ("train.tsv", "dev.tsv", "meta.json", "README.md"):
        assert (d1 / name).read_bytes() == (d2 / name).read_bytes()
    assert (d1 / "train.tsv").read_bytes() != (d3 / "train.tsv").read_bytes()
    assert (d1 / "dev.tsv").read_bytes() != (d3 / "dev.tsv").read_bytes()


def test_generation_does_not_touch_global_random_state() -> None:
    import random

    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    generate_examples(50, seed=0)
    assert (random.random(), np.random.random()) == expected


# ----------------------------------------------------------------------------- the task folder
def test_task_folder_format_dedup_and_meta(tmp_path: Path) -> None:
    task = write_synthetic_glue(tmp_path, n_train=400, n_dev=120, seed=5, label_noise=0.1)
    assert task == tmp_path / "SYNTH"
    header, train = _read_tsv(task / "train.tsv")
    header_dev, dev = _read_tsv(task / "dev.tsv")
    assert header == header_dev == "sentence\tlabel"
    assert len(train) == 400 and len(dev) == 120
    train_texts = [t for t, _ in train]
    dev_texts = [t for t, _ in dev]
    assert len(set(train_texts)) == 400 and len(set(dev_texts)) == 120
    assert not set(train_texts) & set(dev_texts)
    for text, label in train + dev:
        assert label in (0, 1)
        assert "\t" not in text and "\r" not in text and text == text.lower() and text.strip() == text
        assert syn.MIN_WORDS <= sum(t not in syn.BOUNDARY_PUNCT for t in tokenize(text)) <= syn.MAX_WORDS
    meta = json.loads((task / "meta.json").read_text())
    assert meta["seed"] == 5 and meta["label_noise"] == 0.1 and meta["task"] == "SYNTH"
    flipped = np.mean([clean_label(t) != y for t, y in train])
    assert meta["splits"]["train"]["flipped_fraction"] == pytest.approx(flipped, abs=1e-4)
    assert meta["splits"]["dev"]["n"] == 120
    assert meta["splits"]["train"]["ambiguous_fraction"] == pytest.approx(
        np.mean([is_ambiguous(t) for t in train_texts]), abs=1e-4
    )
    assert "## Grammar" in (task / "README.md").read_text()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_train": -1}, "n_train"),
        ({"n_dev": 2.5}, "n_dev"),
        ({"label_noise": 0.7}, "label_noise"),
        ({"label_noise": -0.1}, "label_noise"),
    ],
)
def test_bad_arguments_raise_input_error_and_keep_old_files(tmp_path: Path, kwargs: dict, match: str) -> None:
    task = write_synthetic_glue(tmp_path, n_train=20, n_dev=10, seed=0)
    before = (task / "train.tsv").read_bytes()
    with pytest.raises(InputError, match=match):
        write_synthetic_glue(tmp_path, **{"n_train": 20, "n_dev": 10, "seed": 1, **kwargs})
    assert (task / "train.tsv").read_bytes() == before


# ----------------------------------------------------------------------------- labels
def test_roughly_balanced() -> None:
    labels = [y for _, y in generate_examples(3000, seed=11)]
    assert 0.46 <= np.mean(labels) <= 0.54


def test_label_noise_rate_matches_setting() -> None:
    n = 4000
    clean = generate_examples(n, seed=7, label_noise=0.0)
    assert all(clean_label(t) == y for t, y in clean)
    for p in (0.05, 0.2):
        noisy = generate_examples(n, seed=7, label_noise=p)
        assert [t for t, _ in noisy] == [t for t, _ in clean]  # the texts do not depend on the noise
        rate = np.mean([y != clean_label(t) for t, y in noisy])
        # binomial std is sqrt(p(1-p)/n) <= 0.0064; allow ~3 std
        assert abs(rate - p) < 0.02, (p, rate)


def test_ambiguous_examples_exist_but_are_few() -> None:
    texts = [t for t, _ in generate_examples(3000, seed=2, label_noise=0.0)]
    frac = np.mean([is_ambiguous(t) for t in texts])
    assert 0.01 < frac < 0.10
    # an ambiguous review's label is a fixed, text-determined coin flip
    amb = [t for t in texts if is_ambiguous(t)]
    assert {clean_label(t) for t in amb} == {0, 1}
    assert [clean_label(t) for t in amb] == [clean_label(t) for t in amb]


# Hand-labelled sentences: an independent reference for the labeller's semantics.
@pytest.mark.parametrize(
    ("sentence", "label"),
    [
        ("the plot is good.", 1),
        ("the plot is not good.", 0),
        ("this film is never boring.", 1),
        ("the ending was hardly original.", None),  # "original" is not in the lexicon: no sentiment
        ("the plot is dull, but the acting is superb.", 1),
        ("the acting is superb, but the plot is dull.", 0),
        ("the acting is superb. however, the plot is dull.", 0),
        ("although the plot is dull, the acting is superb.", 1),
        ("the acting is superb, although the plot is dull.", 1),
        ("even though the food was terrible, i really enjoyed the coffee.", 1),
        ("the food was superb and the service was slightly dull.", 1),
        ("the food was good and the service was terrible.", 0),
        ("i did not enjoy the book.", 0),
        ("we never hated this hotel.", 1),
        ("the film is no masterpiece.", 0),
        ("the ending was a bit of a mess.", 0),
        ("my friend watched this movie last week. honestly, the cast was very good.", 1),
    ],
)
def test_hand_labelled_sentences(sentence: str, label: int | None) -> None:
    if label is None:
        assert sentence_score(sentence) == 0
    else:
        assert clean_label(sentence) == label
        assert not is_ambiguous(sentence)


def test_mixed_review_is_ambiguous() -> None:
    s = "the food was good and the service was bad."
    assert is_ambiguous(s)
    assert clean_label(s) == clean_label(s)


def test_text_labeller_agrees_with_generator_structure() -> None:
    for review in _reviews(3000):
        assert sentence_score(review.render()) == pytest.approx(review.score()), review.render()
        assert clean_label(review.render()) == review.clean_label()


def test_negating_a_review_flips_its_label() -> None:
    checked = 0
    for review in _reviews(600):
        text = review.render()
        if is_ambiguous(text):
            continue
        neg = review.negated().render()
        assert neg != text
        assert clean_label(neg) == 1 - clean_label(text), (text, neg)
        assert sentence_score(neg) == pytest.approx(-sentence_score(text))
        checked += 1
    assert checked > 500


def test_clause_after_but_decides() -> None:
    checked = 0
    for review in _reviews(1500):
        if review.form not in ("contrast", "concessive") or review.score() == 0:
            continue
        text = review.render()
        main_only = Review("coord", review.main).render()
        assert clean_label(text) == clean_label(main_only), text
        # whatever the minor clause says, flipping it changes nothing
        flipped_minor = replace(review, minor=tuple(c.negated() for c in review.minor)).render()
        assert clean_label(flipped_minor) == clean_label(text), flipped_minor
        # while flipping the main clause(s) flips the label
        assert clean_label(review.negated().render()) == 1 - clean_label(text)
        checked += 1
    assert checked > 400


def test_intensifiers_and_downtoners_change_strength_not_polarity() -> None:
    checked = 0
    for review in _reviews(1500):
        if review.form != "single" or review.main[0].negator:
            continue
        clause = review.main[0]
        mods = {
            "adj": (syn.ADJ_INTENSIFIERS, syn.ADJ_DOWNTONERS),
            "noun": (syn.NOUN_INTENSIFIERS, syn.NOUN_DOWNTONERS),
            "verb": (syn.VERB_INTENSIFIERS, syn.VERB_DOWNTONERS),
        }[clause.kind]
        plain = replace(review, main=(replace(clause, modifier=None),)).render()
        strong = replace(review, main=(replace(clause, modifier=mods[0][checked % len(mods[0])]),)).render()
        weak = replace(review, main=(replace(clause, modifier=mods[1][checked % len(mods[1])]),)).render()
        base = sentence_score(plain)
        assert clean_label(strong) == clean_label(weak) == clean_label(plain)
        assert sentence_score(strong) == pytest.approx(1.5 * base), strong
        assert sentence_score(weak) == pytest.approx(0.5 * base), weak
        checked += 1
    assert checked > 200


def test_topic_words_carry_no_label() -> None:
    # Neutral (topic / filler) words never have a role, and every domain is balanced.
    roles = (
        set(syn._SENTIMENT)
        | syn.INTENSIFIER_WORDS
        | syn.DOWNTONER_WORDS
        | syn.NEGATORS
        | syn.CONTRAST_MARKERS
        | syn.CONCESSIVE_MARKERS
        | syn.COORDINATORS
    )
    assert not syn.neutral_vocabulary() & roles
    examples = generate_examples(3000, seed=9, label_noise=0.0)
    for domain in ("hotel", "film", "phone"):
        names = set(syn.DOMAINS[domain]["names"])
        ys = [y for t, y in examples if names & set(tokenize(t))]
        assert len(ys) > 150
        assert 0.4 < np.mean(ys) < 0.6, domain


# ----------------------------------------------------------------------------- learnability
def _bow_logistic_regression(train: list[tuple[str, int]], dev: list[tuple[str, int]]) -> float:
    """Dev accuracy of L2 logistic regression on binary bag-of-words features, full-batch gradient descent."""
    vocab = {w: i for i, w in enumerate(sorted({w for t, _ in train for w in tokenize(t)}))}

    def feats(rows: list[tuple[str, int]]) -> np.ndarray:
        x = np.zeros((len(rows), len(vocab)))
        for i, (t, _) in enumerate(rows):
            for w in tokenize(t):
                if w in vocab:
                    x[i, vocab[w]] = 1.0
        return x

    x, y = feats(train), np.array([lab for _, lab in train], dtype=float)
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(800):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        w -= x.T @ (p - y) / len(y) + 1e-4 * w
        b -= float(np.mean(p - y))
    train_acc = np.mean(((x @ w + b) > 0) == y)
    assert train_acc > 0.6  # the optimiser did fit something
    y_dev = np.array([lab for _, lab in dev])
    return float(np.mean(((feats(dev) @ w + b) > 0) == y_dev))


def test_bag_of_words_is_above_chance_but_far_from_perfect(tmp_path: Path) -> None:
    task = write_synthetic_glue(tmp_path, n_train=3000, n_dev=800, seed=0)
    _, train = _read_tsv(task / "train.tsv")
    _, dev = _read_tsv(task / "dev.tsv")
    acc = _bow_logistic_regression(train, dev)
    # keywords alone carry signal, but negation and contrast keep a linear model well below the
    # ~0.93 that the clean labeller reaches on noisy dev labels
    assert 0.58 < acc < 0.85, acc
    oracle = np.mean([clean_label(t) == y for t, y in dev])
    assert oracle > 0.9
    assert acc < oracle - 0.08


# ----------------------------------------------------------------------------- vocabulary
def test_every_generated_word_is_in_the_declared_vocabulary() -> None:
    vocab = syn.vocabulary()
    for text, _ in generate_examples(2000, seed=4):
        missing = {t for t in tokenize(text) if t not in syn.BOUNDARY_PUNCT} - vocab
        assert not missing, (missing, text)


def test_words_are_minilm_wordpiece_tokens(minilm_dir: Path) -> None:
    wordpieces = set((minilm_dir / "vocab.txt").read_text(encoding="utf-8").split("\n"))
    words = syn.vocabulary()
    whole = {w for w in words if w in wordpieces}
    assert len(words) > 300
    assert len(whole) / len(words) >= 0.95, sorted(words - whole)
