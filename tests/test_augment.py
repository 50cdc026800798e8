"""TinyBERT-style augmentation: neighbours, determinism, file format.

The embedding tests use a hand-built vocabulary and embedding matrix in which every word's
nearest neighbour is known by construction (pairs of words share a direction), so "replaced words
are neighbours" is checked against an independent answer, not against the code's own output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from confdistill.data.augment import (  # noqa: E402
    STOP_WORDS,
    EmbeddingCandidates,
    augment_file,
    augment_words,
    has_mlm_head,
    nearest_neighbours,
)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Pairs of synonyms by construction: each word's nearest neighbour is its partner.
PAIRS = [("good", "great"), ("bad", "awful"), ("movie", "film"), ("plot", "story"), ("actor", "star")]
EXTRA = ["the", "a", "is", "was", ",", ".", "##s"]


def _vocab() -> list[str]:
    return SPECIAL + [w for pair in PAIRS for w in pair] + EXTRA


def _embeddings(vocab: list[str], dim: int = 16, seed: int = 0) -> torch.Tensor:
    """Pair members point in almost the same direction; different pairs are orthogonal."""
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(len(vocab), dim, generator=gen) * 0.01
    for j, (a, b) in enumerate(PAIRS):
        base = torch.zeros(dim)
        base[j] = 1.0
        emb[vocab.index(a)] = base + 0.05 * torch.randn(dim, generator=gen)
        emb[vocab.index(b)] = base + 0.05 * torch.randn(dim, generator=gen)
    return emb


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT whose word-embedding matrix is the constructed one, with its WordPiece vocab."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = tmp_path_factory.mktemp("aug_model")
    vocab = _vocab()
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab=str(out / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(out)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    model = BertModel(config)
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(_embeddings(vocab))
    model.save_pretrained(out)
    return out


def _write_sst2(folder: Path, rows: list[tuple[str, int]]) -> Path:
    task = folder / "SST-2"
    task.mkdir(parents=True, exist_ok=True)
    lines = ["sentence\tlabel"] + [f"{s} \t{label}" for s, label in rows]
    (task / "train.tsv").write_text("\n".join(lines) + "\n")
    return folder


ROWS = [
    ("the movie is good", 1),
    ("a bad plot , awful actor", 0),
    ("the film was great", 1),
    ("the story is bad", 0),
    ("the the a", 1),  # stop words only: variants equal the original
]
NEIGHBOUR = {a: b for a, b in PAIRS} | {b: a for a, b in PAIRS}


def test_nearest_neighbours_match_bruteforce() -> None:
    gen = torch.Generator().manual_seed(1)
    emb = torch.randn(50, 8, generator=gen)
    cand = torch.arange(5, 50)
    q = emb[:10]
    exclude = torch.tensor([-1] * 5 + [5, 6, 7, 8, 9])
    got = nearest_neighbours(emb, q, cand, k=3, exclude=exclude, batch_size=4)
    # Independent reference: numpy cosine similarity, full sort.
    e = emb.numpy() / np.linalg.norm(emb.numpy(), axis=1, keepdims=True)
    for i in range(10):
        sims = {int(c): float(e[i] @ e[c]) for c in cand if int(c) != int(exclude[i])}
        want = sorted(sims, key=lambda c: -sims[c])[:3]
        assert got[i].tolist() == want


def test_embedding_candidates_are_the_constructed_neighbours(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    emb = _embeddings(_vocab())
    words = sorted(NEIGHBOUR)
    table = EmbeddingCandidates.build(words, tok, emb, k=1).table
    assert table == {w: [NEIGHBOUR[w]] for w in words}
    # Larger k: the partner still comes first and the word itself never appears; no ## pieces.
    table5 = EmbeddingCandidates.build(words, tok, emb, k=5).table
    for w in words:
        assert table5[w][0] == NEIGHBOUR[w] and w not in table5[w]
        assert all(c.isalpha() for c in table5[w])


def test_augment_words_probability_and_determinism() -> None:
    words = ["good", "movie", "the"]
    cands = {0: ["great"], 1: ["film"]}
    a = augment_words(words, cands, n_aug=200, p=0.4, rng=np.random.default_rng(3))
    b = augment_words(words, cands, n_aug=200, p=0.4, rng=np.random.default_rng(3))
    assert a == b and len(a) == 200
    changed0 = np.mean([v.split()[0] == "great" for v in a])
    assert 0.3 < changed0 < 0.5  # Binomial(200, 0.4): 0.4 ± 0.035 (1σ)
    assert all(v.split()[2] == "the" for v in a)
    assert augment_words(words, cands, n_aug=5, p=0.0, rng=np.random.default_rng(0)) == ["good movie the"] * 5
    assert augment_words(words, cands, n_aug=2, p=1.0, rng=np.random.default_rng(0)) == ["great film the"] * 2


def test_augment_file_format_neighbours_determinism(tiny_model_dir: Path, tmp_path: Path) -> None:
    from confdistill.data import read_glue_file

    data = _write_sst2(tmp_path / "glue", ROWS)
    out1, out2, out3 = tmp_path / "a1.tsv", tmp_path / "a2.tsv", tmp_path / "a3.tsv"
    kw = {"model_dir": tiny_model_dir, "n_aug": 6, "p": 0.5, "k": 1, "progress": False}
    summary = augment_file("SST-2", data, out1, seed=7, **kw)
    augment_file("SST-2", data, out2, seed=7, **kw)
    augment_file("SST-2", data, out3, seed=8, **kw)
    assert out1.read_bytes() == out2.read_bytes()  # same seed → same bytes
    assert out1.read_bytes() != out3.read_bytes()  # the seed matters
    assert summary["candidates"] == "embedding neighbours" and summary["rows"] == 7 * len(ROWS)

    original = (data / "SST-2" / "train.tsv").read_text().splitlines()
    lines = out1.read_text().splitlines()
    assert len(lines) == 1 + 7 * len(ROWS)
    assert lines[: 1 + len(ROWS)] == original  # header + originals first, verbatim

    # The augmented file reads back with the task's own reader; labels follow their example.

    examples = read_glue_file("SST-2", out1)
    assert len(examples) == 7 * len(ROWS)
    variants = examples[len(ROWS):]
    for i, (sentence, label) in enumerate(ROWS):
        words = sentence.split()
        for v in variants[i * 6 : (i + 1) * 6]:
            assert v.label == label
            new = v.text_a.split()
            assert len(new) == len(words)
            for w_old, w_new in zip(words, new, strict=True):
                if w_old in STOP_WORDS or not w_old.isalpha():
                    assert w_new == w_old
                else:
                    assert w_new in (w_old, NEIGHBOUR[w_old])
    # With p = 0.5 and 6 variants of 12 replaceable words some replacements happen.
    assert sum(v.text_a.split() != ROWS[i // 6][0].split() for i, v in enumerate(variants)) > 0


def test_augment_file_refuses_bad_arguments(tiny_model_dir: Path, tmp_path: Path) -> None:
    from confdistill.errors import InputError

    data = _write_sst2(tmp_path / "glue", ROWS)
    with pytest.raises(InputError, match="--p"):
        augment_file("SST-2", data, tmp_path / "x.tsv", model_dir=tiny_model_dir, p=1.5, progress=False)
    with pytest.raises(InputError, match="overwrite"):
        augment_file("SST-2", data, data / "SST-2" / "train.tsv", model_dir=tiny_model_dir, progress=False)
    assert not (tmp_path / "x.tsv").exists()


def test_mlm_head_detection(tiny_bert, tmp_path: Path) -> None:
    from transformers import BertConfig, BertForMaskedLM

    assert not has_mlm_head(tiny_bert())  # a sequence classifier has no MLM head
    mlm = BertForMaskedLM(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32))
    mlm.save_pretrained(tmp_path / "mlm")
    assert has_mlm_head(tmp_path / "mlm")


def test_augment_cli(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from confdistill.cli.main import main

    data = _write_sst2(tmp_path / "glue", ROWS)
    rc = main(["augment", "--task", "sst2", "--data-dir", str(data), "--model", str(tiny_model_dir),
               "--n-aug", "2", "--seed", "1"])
    assert rc == 0
    out = data / "SST-2" / "train_aug.tsv"  # default: beside train.tsv
    assert json.loads(capsys.readouterr().out)["rows"] == 3 * len(ROWS)
    assert len(out.read_text().splitlines()) == 1 + 3 * len(ROWS)
    # A user error: one line, exit 2, no output written.
    rc = main(["augment", "--task", "SST-2", "--data-dir", str(data), "--model", str(tiny_model_dir),
               "--p", "2", "--out", str(tmp_path / "bad.tsv")])
    assert rc == 2 and "--p" in capsys.readouterr().err
    assert not (tmp_path / "bad.tsv").exists()
