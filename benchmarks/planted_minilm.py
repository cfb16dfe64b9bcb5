"""A MiniLM fine-tuned on planted keywords: a model whose integrated-gradients paths are sharp.

The demo's sentiment model has smooth paths (Captum's 50 Gauss-Legendre steps leave a
median completeness gap of 2-4e-5), while issue #2 measured 2.3% at 50 steps, 9% at 32,
58% at 16 and 0.01% at 100 on "a fine-tuned MiniLM". This model reproduces that regime:
the real all-MiniLM-L6-v2 weights fine-tuned to classify texts of filler words by one
planted word (positive: wonderful/superb/delightful, negative: dreadful/awful/horrid),
with texts that have no planted word, and copies of the training texts with every word
replaced by [PAD] or [MASK] (what an IG baseline looks like), labelled neutral. So the
prediction switches sharply somewhere on the path from the baseline to the text.

``build_planted_minilm()`` fine-tunes it (about 80 s of CPU, seeded) and caches it in
the textlens cache directory; ``filler_pieces()`` and ``PlantedPieces`` give the
benchmark texts of any length with exactly one planted word each.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import torch

FILLER = (  # noqa: SIM905 (one readable block of words)
    "the a an of to in on at for with by from this that it is was be are movie film story "
    "plot actor scene time day night people thing way place week friend city road car "
    "house book music song game team year table window door light water"
).split()
POSITIVE = ["wonderful", "superb", "delightful"]
NEGATIVE = ["dreadful", "awful", "horrid"]
LABELS = ["negative", "positive", "neutral"]
NEUTRAL = 2
SETTINGS = {
    "recipe": "planted-minilm-v1",
    "lr": 5e-5,
    "batch_size": 32,
    "max_epochs": 10,
    "n_train": 600,
    "baseline_rows_per_batch": 8,
    "seed": 0,
}


def planted_texts(n: int, seed: int, neutral: float = 0.0) -> tuple[list[str], list[int]]:
    """Texts of 4-12 filler words with one planted word (or, with probability ``neutral``,
    none: label neutral); the label follows the planted word."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 12))]
        if neutral and rng.random() < neutral:
            label = NEUTRAL
        else:
            label = rng.randrange(2)
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def _as_baselines(ids: torch.Tensor, mask: torch.Tensor, tokenizer, gen) -> torch.Tensor:
    """``ids`` with every word replaced by [PAD] or [MASK] (per row), like an IG baseline."""
    keep = (ids == tokenizer.cls_token_id) | (ids == tokenizer.sep_token_id) | (mask == 0)
    use_pad = torch.rand(len(ids), 1, generator=gen) < 0.5
    fill = torch.where(use_pad, tokenizer.pad_token_id, tokenizer.mask_token_id)
    return torch.where(keep, ids, fill.expand_as(ids))


def _fit(model, tokenizer, data, val, gen, baseline_rows: int) -> int:
    """AdamW until every validation text is right with probability > 0.9; epochs run."""
    texts, labels = data
    optimizer = torch.optim.AdamW(model.parameters(), lr=SETTINGS["lr"])
    val_enc = tokenizer(val[0], padding=True, return_tensors="pt")
    size = SETTINGS["batch_size"]
    for epoch in range(1, SETTINGS["max_epochs"] + 1):
        model.train()
        order = torch.randperm(len(texts), generator=gen).tolist()
        for start in range(0, len(order), size):
            idx = order[start : start + size]
            enc = dict(tokenizer([texts[i] for i in idx], padding=True, return_tensors="pt"))
            y = torch.tensor([labels[i] for i in idx])
            if baseline_rows:
                k = min(baseline_rows, len(idx))
                base = _as_baselines(
                    enc["input_ids"][:k], enc["attention_mask"][:k], tokenizer, gen
                )
                enc = {name: torch.cat([v, v[:k]]) for name, v in enc.items()}
                enc["input_ids"][-k:] = base
                y = torch.cat([y, torch.full((k,), NEUTRAL)])
            loss = model(**enc, labels=y).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            probs = model(**val_enc).logits.softmax(-1)
        right = bool((probs.argmax(-1) == torch.tensor(val[1])).all())
        if right and float(probs.max(-1).values.min()) > 0.9:
            return epoch
    return SETTINGS["max_epochs"]


def build_planted_minilm(cache_dir: Path | None = None, *, rebuild: bool = False) -> Path:
    """The cached planted-keyword MiniLM folder, fine-tuned on first use."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from textlens.demo.build import default_cache_dir
    from textlens.demo.data import locate_minilm

    # next to the demo model's folder (the textlens cache root), not inside it
    folder = (cache_dir or default_cache_dir().parent) / "bench-planted-minilm"
    info = folder / "textlens-bench.json"
    if not rebuild and info.is_file() and json.loads(info.read_text())["settings"] == SETTINGS:
        return folder
    started = time.process_time()
    print(f"fine-tuning the planted-keyword MiniLM into {folder} ...", file=sys.stderr)
    base = str(locate_minilm())
    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(SETTINGS["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=3,
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )
    gen = torch.Generator().manual_seed(SETTINGS["seed"])
    n = SETTINGS["n_train"]
    epochs = _fit(model, tokenizer, planted_texts(n, 0), planted_texts(60, 1000), gen, 0)
    epochs += _fit(
        model,
        tokenizer,
        planted_texts(n, 1, neutral=1 / 3),
        planted_texts(90, 2000, neutral=1 / 3),
        gen,
        SETTINGS["baseline_rows_per_batch"],
    )
    test_texts, test_labels = planted_texts(300, 123, neutral=1 / 3)
    with torch.no_grad():
        enc = tokenizer(test_texts, padding=True, return_tensors="pt")
        accuracy = float(
            (model(**enc).logits.argmax(-1) == torch.tensor(test_labels)).float().mean()
        )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    report = {
        "settings": SETTINGS,
        "epochs": epochs,
        "heldout_accuracy": accuracy,
        "cpu_seconds": time.process_time() - started,
    }
    info.write_text(json.dumps(report, indent=2) + "\n")
    print(f"planted-keyword MiniLM: held-out accuracy {accuracy:.3f}", file=sys.stderr)
    return folder


def model_summary(folder: Path) -> str:
    """A one-line name of the cached model for reports."""
    info = json.loads((folder / "textlens-bench.json").read_text())
    return (
        f"planted-keyword MiniLM ({info['settings']['recipe']}, {info['epochs']} epochs, "
        f"held-out accuracy {info['heldout_accuracy']:.3f})"
    )


class PlantedPieces(list):
    """Filler-only pieces for ``build_texts``, which plants one keyword in each text built.

    ``plant(text, i)`` inserts the i-th text's planted word (seeded, alternating positive
    and negative) at a seeded word position.
    """

    def __init__(self, n: int = 4000, seed: int = 7) -> None:
        rng = random.Random(seed)
        super().__init__(
            " ".join(rng.choice(FILLER) for _ in range(rng.randint(4, 10))) for _ in range(n)
        )
        self.seed = seed

    def plant(self, text: str, i: int) -> str:
        rng = random.Random(f"{self.seed}:{i}")
        words = text.split()
        word = rng.choice(POSITIVE if i % 2 else NEGATIVE)
        words.insert(rng.randrange(len(words) + 1), word)
        return " ".join(words)
