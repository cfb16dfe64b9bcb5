"""Tiny models and tokenizers built in-process: no download, seconds to build."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

from textlens.model import ModelAdapter

torch.set_num_threads(1)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FILLER = (  # noqa: SIM905 (one readable block of words)
    "the a an of to in on at for with by from this that it is was be are movie film story "
    "plot actor scene time day night people thing way place week friend city road car "
    "house book music song game team year table window door light water"
).split()
POSITIVE = ["wonderful", "superb", "delightful"]
NEGATIVE = ["dreadful", "awful", "horrid"]
NEUTRAL = 2  # label index of texts without a decisive word (planted model)
SUBWORDS = ["un", "##believ", "##able", "##ly", "play", "##ing", "##ed", "walk"]


def wordpiece_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A BERT-style (uncased WordPiece) fast tokenizer over ``words``."""
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(SPECIALS + words + list(".,!?")))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def tiny_bert(
    vocab_size: int, *, seed: int = 0, layers: int = 2, num_labels: int = 2
) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    labels = ["negative", "positive", "neutral"][:num_labels]
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config)


@dataclass
class PlantedData:
    texts: list[str]
    labels: list[int]
    planted: list[str | None]


def planted_data(n: int, seed: int, *, neutral: float = 0.0) -> PlantedData:
    """Texts of 4-12 filler words with one decisive word; the label follows the decisive word.

    With probability ``neutral`` a text gets no decisive word and the label 'neutral' (2);
    its ``planted`` entry is then None. The default draws decisive texts only.
    """
    rng = random.Random(seed)
    texts, labels, planted = [], [], []
    for _ in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 12))]
        if neutral and rng.random() < neutral:
            label, word = NEUTRAL, None
        else:
            label = rng.randrange(2)
            word = rng.choice(POSITIVE if label else NEGATIVE)
            words.insert(rng.randrange(len(words) + 1), word)
        texts.append(" ".join(words))
        labels.append(label)
        planted.append(word)
    return PlantedData(texts, labels, planted)


def _neutralised(ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer, gen) -> torch.Tensor:
    """``ids`` with every word replaced by [PAD] or [MASK] (per row), like an IG baseline."""
    keep = (ids == tokenizer.cls_token_id) | (ids == tokenizer.sep_token_id) | (attention_mask == 0)
    use_pad = torch.rand(len(ids), 1, generator=gen) < 0.5
    fill = torch.where(use_pad, tokenizer.pad_token_id, tokenizer.mask_token_id)
    return torch.where(keep, ids, fill.expand_as(ids))


def _fit(model, tokenizer, data: PlantedData, val: PlantedData, gen, *, neutral_rows: int) -> None:
    """AdamW until every validation text is right with probability > 0.9 (at most 10 epochs).

    ``neutral_rows`` rows of each batch are repeated as baselines labelled neutral.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    val_enc = tokenizer(val.texts, padding=True, return_tensors="pt")
    for _ in range(10):
        model.train()
        order = torch.randperm(len(data.texts), generator=gen).tolist()
        for start in range(0, len(order), 32):
            idx = order[start : start + 32]
            enc = dict(tokenizer([data.texts[i] for i in idx], padding=True, return_tensors="pt"))
            labels = torch.tensor([data.labels[i] for i in idx])
            if neutral_rows:
                k = min(neutral_rows, len(idx))
                base = _neutralised(enc["input_ids"][:k], enc["attention_mask"][:k], tokenizer, gen)
                enc = {name: torch.cat([v, v[:k]]) for name, v in enc.items()}
                enc["input_ids"][-k:] = base
                labels = torch.cat([labels, torch.full((k,), NEUTRAL)])
            loss = model(**enc, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            probs = model(**val_enc).logits.softmax(-1)
        right = (probs.argmax(-1) == torch.tensor(val.labels)).all()
        if right and probs.max(-1).values.min() > 0.9:
            return


def train_planted_model(seed: int = 0) -> ModelAdapter:
    """A 3-class tiny BERT (negative, positive, neutral) whose label follows the planted word.

    Texts without a decisive word are neutral, and so are the integrated-gradients
    baselines (every word replaced by [PAD] or [MASK]), so ``f(x) - f(baseline)`` is large
    for every decisive text and attributions have something to explain. Two stages (a
    curriculum) make training reliable across seeds: first the decisive texts alone,
    then decisive + neutral texts + neutralised copies.
    """
    tokenizer = wordpiece_tokenizer(FILLER + POSITIVE + NEGATIVE + SUBWORDS)
    model = tiny_bert(len(tokenizer), seed=seed, num_labels=3)
    gen = torch.Generator().manual_seed(seed)
    decisive, decisive_val = planted_data(600, seed), planted_data(60, seed + 1000)
    _fit(model, tokenizer, decisive, decisive_val, gen, neutral_rows=0)
    _fit(
        model,
        tokenizer,
        planted_data(600, seed + 1, neutral=1 / 3),
        planted_data(90, seed + 2000, neutral=1 / 3),
        gen,
        neutral_rows=8,
    )
    model.eval()
    return ModelAdapter(model, tokenizer, model_id="planted-tiny-bert")


@pytest.fixture(scope="session")
def tiny_adapter() -> ModelAdapter:
    """An untrained 2-layer BERT with a WordPiece tokenizer (random but fixed weights)."""
    tokenizer = wordpiece_tokenizer(FILLER + POSITIVE + NEGATIVE + SUBWORDS)
    return ModelAdapter(tiny_bert(len(tokenizer), seed=1), tokenizer, model_id="tiny-bert")


@pytest.fixture(scope="session")
def planted_adapter() -> ModelAdapter:
    """A 3-class tiny BERT (negative, positive, neutral) whose label follows one planted word."""
    return train_planted_model()


@pytest.fixture(scope="session")
def planted_test() -> PlantedData:
    """60 decisive texts (each with one planted word) the planted model never saw."""
    return planted_data(60, seed=123)


TEXTS = [
    "the movie was wonderful",
    "an awful plot with a dreadful actor in the city",
    "unbelievably playing",
    "the story of a friend",
]

# Share of planted-model test texts whose planted word each method ranks first; filled by
# tests/test_explainers_common.py and shown at the end of the run.
PLANTED_RATES: dict[str, float] = {}


def record(request: pytest.FixtureRequest, name: str, value: object) -> None:
    """Attach a measured figure to the test's report (a junit-xml property).

    What the ``record_property`` fixture does, minus its warning under the default
    junit family (xunit2), which our warnings-as-errors setting would turn into a failure.
    """
    request.node.user_properties.append((name, value))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if PLANTED_RATES:
        terminalreporter.section("planted word ranked first (word level, planted test texts)")
        for name, rate in sorted(PLANTED_RATES.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{name:>24}  {rate:6.1%}")


class PassCounter:
    """Counts the passes that reach a torch model (a forward pre-hook); each pass can be
    made to last ``seconds`` longer (slow work, deterministically)."""

    def __init__(self, model: torch.nn.Module, seconds: float = 0.0) -> None:
        import threading

        self.passes = 0
        self.seconds = seconds
        self._lock = threading.Lock()
        self._handle = model.register_forward_pre_hook(self._count)

    def _count(self, _module: object, _args: object) -> None:
        with self._lock:
            self.passes += 1
        if self.seconds:
            import time

            time.sleep(self.seconds)

    def remove(self) -> None:
        self._handle.remove()
