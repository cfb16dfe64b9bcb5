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
FILLER = (
    "the a an of to in on at for with by from this that it is was be are movie film story "
    "plot actor scene time day night people thing way place week friend city road car "
    "house book music song game team year table window door light water".split()
)
POSITIVE = ["wonderful", "superb", "delightful"]
NEGATIVE = ["dreadful", "awful", "horrid"]
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


def tiny_bert(vocab_size: int, *, seed: int = 0, layers: int = 2, num_labels: int = 2) -> BertForSequenceClassification:
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
    planted: list[str]


def planted_data(n: int, seed: int) -> PlantedData:
    """Texts of 4-12 filler words with one decisive word; the label follows the decisive word."""
    rng = random.Random(seed)
    texts, labels, planted = [], [], []
    for _ in range(n):
        label = rng.randrange(2)
        word = rng.choice(POSITIVE if label else NEGATIVE)
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 12))]
        words.insert(rng.randrange(len(words) + 1), word)
        texts.append(" ".join(words))
        labels.append(label)
        planted.append(word)
    return PlantedData(texts, labels, planted)


def train_planted_model(seed: int = 0) -> ModelAdapter:
    tokenizer = wordpiece_tokenizer(FILLER + POSITIVE + NEGATIVE + SUBWORDS)
    model = tiny_bert(len(tokenizer), seed=seed)
    data = planted_data(600, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(4):
        order = torch.randperm(len(data.texts), generator=gen).tolist()
        for start in range(0, len(order), 32):
            idx = order[start : start + 32]
            enc = tokenizer([data.texts[i] for i in idx], padding=True, return_tensors="pt")
            loss = model(**enc, labels=torch.tensor([data.labels[i] for i in idx])).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return ModelAdapter(model, tokenizer, model_id="planted-tiny-bert")


@pytest.fixture(scope="session")
def tiny_adapter() -> ModelAdapter:
    """An untrained 2-layer BERT with a WordPiece tokenizer (random but fixed weights)."""
    tokenizer = wordpiece_tokenizer(FILLER + POSITIVE + NEGATIVE + SUBWORDS)
    return ModelAdapter(tiny_bert(len(tokenizer), seed=1), tokenizer, model_id="tiny-bert")


@pytest.fixture(scope="session")
def planted_adapter() -> ModelAdapter:
    """A tiny BERT trained until its label follows one planted word per text."""
    return train_planted_model()


@pytest.fixture(scope="session")
def planted_test() -> PlantedData:
    return planted_data(60, seed=123)


TEXTS = [
    "the movie was wonderful",
    "an awful plot with a dreadful actor in the city",
    "unbelievably playing",
    "the story of a friend",
]
