"""Word aggregation across tokenizer families, and explainers across model families.

Three tokenizers are built in-process with the ``tokenizers`` library (no download):
WordPiece (BERT), byte-level BPE (RoBERTa) and a Unigram model with a Metaspace
pre-tokenizer (SentencePiece, as in ALBERT, DeBERTa-v2 and XLM-R). Words are what the
tokenizer's pre-tokenizer calls words, so punctuation differs between families:

* WordPiece and byte-level BPE split punctuation into words of its own
  ("movie," -> "movie", ",");
* SentencePiece splits on whitespace only ("movie," stays one word).

Either way a word's span is its characters in the original text (no leading space from
'▁' or 'Ġ'), runs of spaces never make a word, special tokens are in no word, and a
word's score is the sum of its sub-word scores. Tiny randomly initialised models of each
family then go through every registered explainer.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from conftest import FILLER, NEGATIVE, POSITIVE, SUBWORDS, wordpiece_tokenizer
from test_explainers_common import params_for
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

from textlens.errors import InvalidParameterError, TruncationWarning, UninformativeScoresWarning
from textlens.explainers import REGISTRY, make_explainer
from textlens.explanation import Explanation
from textlens.model import ModelAdapter

CORPUS = [
    "the movie was wonderful and the story was good",
    "an awful plot with a dreadful actor in the city",
    "playing walked believable truly great film music",
    "a friend of the team, at night; on the road!",
] * 10
TEXT = "Unbelievable good movie, truly  great!"
TEXTS = [TEXT, "the movie was awful", "good", "a friend of the team in the city at night"]
WITH_TYPES = ["input_ids", "token_type_ids", "attention_mask"]
WITHOUT_TYPES = ["input_ids", "attention_mask"]


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A RoBERTa-style byte-level BPE tokenizer trained on CORPUS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")),
        ("<s>", tok.token_to_id("<s>")),
        trim_offsets=True,
        add_prefix_space=False,
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_input_names=WITHOUT_TYPES,
    )


def unigram_tokenizer(model_input_names: list[str] = WITH_TYPES) -> PreTrainedTokenizerFast:
    """A SentencePiece-style tokenizer (Unigram + Metaspace, [CLS] ... [SEP]) trained on CORPUS."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=120, special_tokens=specials, unk_token="[UNK]", show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        cls_token="[CLS]",
        sep_token="[SEP]",
        unk_token="[UNK]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        model_input_names=model_input_names,
    )


def wordpiece(model_input_names: list[str] = WITH_TYPES) -> PreTrainedTokenizerFast:
    """The BERT tokenizer of conftest, returning ``model_input_names`` (kept by save_pretrained)."""
    base = wordpiece_tokenizer(FILLER + POSITIVE + NEGATIVE + SUBWORDS)
    return PreTrainedTokenizerFast(
        tokenizer_object=base.backend_tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
        model_input_names=model_input_names,
    )


TOKENIZERS: dict[str, Callable[[], PreTrainedTokenizerFast]] = {
    "wordpiece": wordpiece,
    "bpe": bpe_tokenizer,
    "sentencepiece": unigram_tokenizer,
}
EXPECTED_WORDS = {
    "wordpiece": ["Unbelievable", "good", "movie", ",", "truly", "great", "!"],
    "bpe": ["Unbelievable", "good", "movie", ",", "truly", "great", "!"],
    "sentencepiece": ["Unbelievable", "good", "movie,", "truly", "great!"],
}


def _explanation(tokenizer: PreTrainedTokenizerFast, text: str) -> Explanation:
    """An explanation of ``text`` with made-up scores (no model involved)."""
    model = SimpleModel(len(tokenizer))
    adapter = ModelAdapter(model, tokenizer, model_id="words")
    encoding = adapter.encode([text])
    n = encoding.lengths[0]
    return Explanation(
        text=text,
        tokens=tuple(encoding.tokens[0]),
        offsets=tuple(encoding.offsets[0]),
        special=tuple(encoding.special[0]),
        word_ids=tuple(encoding.word_ids[0]),
        scores=tuple(float(2.0**-i) for i in range(n)),  # distinct: sums identify tokens
        method="test",
        params={},
        target=0,
        labels=("a", "b"),
        probabilities=(0.5, 0.5),
        model_id="words",
    )


class SimpleModel(torch.nn.Module):
    """Just enough of a model for ModelAdapter to encode with."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.config = transformers.PretrainedConfig(num_labels=2, max_position_embeddings=64)
        self.embed = torch.nn.Embedding(vocab_size, 2)


@pytest.mark.parametrize("kind", sorted(TOKENIZERS))
def test_words_and_spans(kind: str) -> None:
    e = _explanation(TOKENIZERS[kind](), TEXT)
    words = e.words
    assert [w.text for w in words] == EXPECTED_WORDS[kind]
    for w in words:
        assert TEXT[w.start : w.end] == w.text
    # Every non-special token is in exactly one word; no special token is in any.
    in_words = sorted(i for w in words for i in w.tokens)
    assert in_words == [i for i, s in enumerate(e.special) if not s]
    # Sub-words are summed (scores are distinct powers of two, so sums are exact).
    for w, score in zip(words, e.word_scores, strict=True):
        assert score == math.fsum(e.scores[i] for i in w.tokens)
    assert len(words[0].tokens) > 1  # "Unbelievable" is split into sub-words everywhere


@pytest.mark.parametrize("kind", sorted(TOKENIZERS))
def test_without_punctuation_words_are_the_whitespace_words(kind: str) -> None:
    text = "  a friend  of the   team "
    e = _explanation(TOKENIZERS[kind](), text)
    assert [w.text for w in e.words] == text.split()


# ---------------------------------------------------------------------- model families
SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "num_labels": 2,
}


def _bpe_ids(tokenizer) -> dict[str, int]:
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def family(name: str) -> tuple[Any, PreTrainedTokenizerFast]:
    """A tiny random ``*ForSequenceClassification`` model of ``name`` and its tokenizer."""
    t = transformers
    if name == "bert":
        tok = wordpiece()
        cfg = t.BertConfig(vocab_size=len(tok), max_position_embeddings=64, **SMALL)
        return t.BertForSequenceClassification(cfg), tok
    if name == "distilbert":
        tok = wordpiece(WITHOUT_TYPES)
        cfg = t.DistilBertConfig(
            vocab_size=len(tok),
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=64,
            num_labels=2,
        )
        return t.DistilBertForSequenceClassification(cfg), tok
    if name == "electra":  # embedding_size != hidden_size: a projection after the embeddings
        tok = wordpiece()
        cfg = t.ElectraConfig(
            vocab_size=len(tok), embedding_size=16, max_position_embeddings=64, **SMALL
        )
        return t.ElectraForSequenceClassification(cfg), tok
    if name == "roberta":  # positions start after padding_idx; no token_type_ids
        tok = bpe_tokenizer()
        cfg = t.RobertaConfig(
            vocab_size=len(tok), max_position_embeddings=66, **_bpe_ids(tok), **SMALL
        )
        return t.RobertaForSequenceClassification(cfg), tok
    if name == "modernbert":  # rotary positions, local/global attention, no token_type_ids
        tok = bpe_tokenizer()
        cfg = t.ModernBertConfig(
            vocab_size=len(tok),
            max_position_embeddings=64,
            global_attn_every_n_layers=2,
            local_attention=8,
            cls_token_id=tok.cls_token_id,
            sep_token_id=tok.sep_token_id,
            **_bpe_ids(tok),
            **SMALL,
        )
        return t.ModernBertForSequenceClassification(cfg), tok
    if name == "deberta-v2":  # relative attention, SentencePiece
        tok = unigram_tokenizer()
        cfg = t.DebertaV2Config(
            vocab_size=len(tok),
            max_position_embeddings=64,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_buckets=8,
            pad_token_id=tok.pad_token_id,
            **SMALL,
        )
        return t.DebertaV2ForSequenceClassification(cfg), tok
    if name == "deberta-v3":  # DeBERTa-v3's settings: no absolute positions, no segments
        tok = unigram_tokenizer()
        cfg = t.DebertaV2Config(
            vocab_size=len(tok),
            max_position_embeddings=64,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_buckets=8,
            pad_token_id=tok.pad_token_id,
            position_biased_input=False,
            type_vocab_size=0,
            **SMALL,
        )
        return t.DebertaV2ForSequenceClassification(cfg), tok
    if name == "albert":  # factorised embeddings, shared layers, SentencePiece
        tok = unigram_tokenizer()
        cfg = t.AlbertConfig(
            vocab_size=len(tok),
            embedding_size=16,
            max_position_embeddings=64,
            pad_token_id=tok.pad_token_id,
            **SMALL,
        )
        return t.AlbertForSequenceClassification(cfg), tok
    return _more_family(name)


def _more_family(name: str) -> tuple[Any, PreTrainedTokenizerFast]:
    """Families with their own twists, checked by `test_more_families` (see MORE_FAMILIES)."""
    t = transformers
    if name == "mpnet":  # relative position bias, no token_type_ids, padding id 1 (fixed)
        tok = bpe_tokenizer()
        cfg = t.MPNetConfig(
            vocab_size=len(tok), max_position_embeddings=66, **_bpe_ids(tok), **SMALL
        )
        return t.MPNetForSequenceClassification(cfg), tok
    if name == "mobilebert":  # bottlenecks, embeddings projected from trigrams
        tok = wordpiece()
        cfg = t.MobileBertConfig(
            vocab_size=len(tok),
            max_position_embeddings=64,
            embedding_size=16,
            intra_bottleneck_size=16,
            true_hidden_size=16,
            num_feedforward_networks=1,
            **SMALL,
        )
        return t.MobileBertForSequenceClassification(cfg), tok
    if name == "deberta-v1":
        tok = wordpiece()
        cfg = t.DebertaConfig(
            vocab_size=len(tok),
            max_position_embeddings=64,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            **SMALL,
        )
        return t.DebertaForSequenceClassification(cfg), tok
    if name in ("xlm-roberta", "camembert"):  # RoBERTa's code under their own classes
        tok = bpe_tokenizer()
        config_class, model_class = {
            "xlm-roberta": (t.XLMRobertaConfig, t.XLMRobertaForSequenceClassification),
            "camembert": (t.CamembertConfig, t.CamembertForSequenceClassification),
        }[name]
        cfg = config_class(
            vocab_size=len(tok), max_position_embeddings=66, **_bpe_ids(tok), **SMALL
        )
        return model_class(cfg), tok
    if name == "longformer":  # sliding-window attention, global attention on the first token
        tok = bpe_tokenizer()
        cfg = t.LongformerConfig(
            vocab_size=len(tok),
            max_position_embeddings=66,
            attention_window=4,
            **_bpe_ids(tok),
            **SMALL,
        )
        return t.LongformerForSequenceClassification(cfg), tok
    if name == "funnel":  # the sequence is pooled between blocks
        tok = wordpiece()
        cfg = t.FunnelConfig(
            vocab_size=len(tok),
            block_sizes=[1, 1],
            d_model=32,
            n_head=2,
            d_head=16,
            d_inner=64,
            max_position_embeddings=64,
            num_labels=2,
        )
        return t.FunnelForSequenceClassification(cfg), tok
    if name == "gpt2":  # a decoder: classifies its last token; config without a pad id
        tok = bpe_tokenizer()
        cfg = t.GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64)
        cfg.num_labels = 2
        assert cfg.pad_token_id is None  # transformers alone would refuse batches
        return t.GPT2ForSequenceClassification(cfg), tok
    if name == "llama":  # the generic decoder classifier (Llama, Mistral, Qwen...): rotary
        tok = bpe_tokenizer()
        cfg = t.LlamaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=64,
            max_position_embeddings=64,
            num_labels=2,
            pad_token_id=tok.pad_token_id,
        )
        return t.LlamaForSequenceClassification(cfg), tok
    if name == "modernbert-mean":  # the classifier reads the mean over tokens
        model, tok = family("modernbert")
        model.config.classifier_pooling = "mean"
        return model, tok
    if name == "xlnet":  # relative positions, no length limit, summary of the last position
        tok = unigram_tokenizer()
        cfg = t.XLNetConfig(
            vocab_size=len(tok),
            d_model=32,
            n_layer=2,
            n_head=2,
            d_inner=64,
            num_labels=2,
            pad_token_id=tok.pad_token_id,
        )
        return t.XLNetForSequenceClassification(cfg), tok
    if name == "t5":  # encoder-decoder classified at its last end-of-text token
        tok = unigram_tokenizer()
        cfg = t.T5Config(
            vocab_size=len(tok),
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=1,
            num_decoder_layers=1,
            num_heads=2,
            num_labels=2,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.sep_token_id,
            decoder_start_token_id=tok.pad_token_id,
        )
        return t.T5ForSequenceClassification(cfg), tok
    if name == "bart":  # encoder-decoder: the decoder's last </s> is classified
        tok = bpe_tokenizer()
        cfg = t.BartConfig(
            vocab_size=len(tok),
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=64,
            num_labels=3,  # BART's default: transformers 5 reloads other counts as 3
            decoder_start_token_id=tok.eos_token_id,
            **_bpe_ids(tok),
        )
        return t.BartForSequenceClassification(cfg), tok
    raise AssertionError(name)


FAMILIES = ["bert", "distilbert", "electra", "roberta", "deberta-v2", "albert"]
if hasattr(transformers, "ModernBertForSequenceClassification"):
    FAMILIES.append("modernbert")


@pytest.fixture(scope="module", params=FAMILIES)
def family_adapter(request: pytest.FixtureRequest, tmp_path_factory) -> ModelAdapter:
    """A tiny model of each family, saved and loaded back the way users load models."""
    torch.manual_seed(0)
    model, tokenizer = family(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    adapter = ModelAdapter.from_pretrained(folder)
    assert adapter.tokenizer.model_input_names == tokenizer.model_input_names
    return adapter


def test_family_encodes_and_runs_on_embeddings(family_adapter: ModelAdapter) -> None:
    encoding = family_adapter.encode(TEXTS)
    expected_inputs = [
        n
        for n in family_adapter.tokenizer.model_input_names
        if n not in ("input_ids", "attention_mask")
    ]
    assert list(encoding.model_inputs) == expected_inputs
    assert all(sum(flags) == 2 for flags in encoding.special)  # one start, one end token
    with torch.no_grad():
        by_ids = family_adapter.logits(encoding)
        by_embeds = family_adapter.logits(
            encoding, inputs_embeds=family_adapter.word_embeddings(encoding.input_ids)
        )
        alone = torch.cat([family_adapter.logits(family_adapter.encode([t])) for t in TEXTS])
    torch.testing.assert_close(by_embeds, by_ids, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone, by_ids, rtol=1e-4, atol=1e-5)  # padding changes nothing


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_every_explainer_runs_on_every_family(family_adapter: ModelAdapter, method: str) -> None:
    results = make_explainer(method, family_adapter, **params_for(method)).explain(TEXTS)
    for e, tokens in zip(results, family_adapter.encode(TEXTS).tokens, strict=True):
        assert list(e.tokens) == tokens
        assert len(e.scores) == len(e.tokens)
        assert all(math.isfinite(s) for s in e.scores)
        assert all(e.text[w.start : w.end] == w.text for w in e.words)
        if e.text != TEXT:  # no punctuation: the whitespace words
            assert [w.text for w in e.words] == e.text.split()


def test_integrated_gradients_on_every_family(family_adapter: ModelAdapter) -> None:
    explainer = make_explainer("integrated_gradients", family_adapter, n_steps=32)
    results = explainer.explain(TEXTS, target=1)
    encoding = family_adapter.encode(TEXTS)
    with torch.no_grad():
        logits = family_adapter.logits(encoding)[:, 1].numpy()
    for i, e in enumerate(results):
        # f(x) on the embeddings path is the model's own logit for the token ids.
        assert e.quality["f_x"] == pytest.approx(float(logits[i]), rel=1e-5, abs=1e-6)
        assert abs(e.delta) <= 0.01 * abs(e.quality["f_x"] - e.quality["f_baseline"]) + 1e-6
        assert all(s == 0.0 for s, special in zip(e.scores, e.special, strict=True) if special)
        [alone] = explainer.explain([e.text], target=1)
        scale = np.abs(e.scores).max()
        np.testing.assert_allclose(alone.scores, e.scores, atol=1e-4 * scale + 1e-7)


def test_family_truncates_long_texts(family_adapter: ModelAdapter) -> None:
    # max_length comes from the config (RoBERTa: 2 positions fewer) and must fit the model.
    assert family_adapter.max_length == 64
    long_text = " ".join(["the movie was good"] * 40)
    with pytest.warns(TruncationWarning, match="tokens were dropped"):
        [e] = make_explainer("grad_x_input", family_adapter).explain([long_text])
    assert len(e.tokens) == 64 and e.special[0] and e.special[-1]
    assert e.truncated_tokens > 0
    assert all(math.isfinite(s) for s in e.scores)


def test_gradients_on_sdpa_equal_gradients_on_eager_attention(family_adapter) -> None:
    """Gradient passes run on SDPA where the family has it; their gradients are eager's."""
    encoding = family_adapter.encode(TEXTS)

    def gradient() -> torch.Tensor:
        embeds = family_adapter.word_embeddings(encoding.input_ids).detach().requires_grad_()
        with torch.enable_grad():
            out = family_adapter.logits(encoding, inputs_embeds=embeds)
            (grad,) = torch.autograd.grad(out[:, 0].sum(), embeds)
        return grad

    fast = gradient()
    assert family_adapter.model.config._attn_implementation == (
        family_adapter._fast_attention or "eager"
    )
    original = family_adapter._fast_attention
    family_adapter._fast_attention = None  # as if the family had no SDPA: eager
    try:
        eager = gradient()
    finally:
        family_adapter._fast_attention = original
    assert family_adapter.model.config._attn_implementation == "eager"
    torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-6)


def test_forward_only_passes_use_sdpa_where_the_family_has_it(
    family_adapter: ModelAdapter, request: pytest.FixtureRequest
) -> None:
    family_name = request.node.callspec.params["family_adapter"]
    expected = None if family_name == "deberta-v2" else "sdpa"  # DeBERTa-v2 has no SDPA
    assert family_adapter._fast_attention == expected
    encoding = family_adapter.encode(TEXTS)
    with torch.no_grad():
        fast = family_adapter.logits(encoding)
    assert family_adapter.model.config._attn_implementation == (expected or "eager")
    with torch.enable_grad():  # autograd passes need no attention weights either
        backward = family_adapter.logits(encoding)
    assert family_adapter.model.config._attn_implementation == (expected or "eager")
    with torch.no_grad():
        out = family_adapter.forward(encoding, output_attentions=True)  # switches back
    assert family_adapter.model.config._attn_implementation == "eager"
    assert out.attentions is not None and all(a is not None for a in out.attentions)
    torch.testing.assert_close(fast, out.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(backward.detach(), out.logits, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- more families
#: Families checked once per method (not in FAMILIES, whose tests assume full attention).
#: What each one cannot do is refused with a message that says why and what to use.
MORE_FAMILIES = {
    "xlm-roberta": (),
    "camembert": (),
    "deberta-v3": (),
    "mpnet": (),
    "mobilebert": (),
    "deberta-v1": (),
    "longformer": ("attention_rollout",),  # sliding-window attention has no full matrix
    "funnel": ("attention", "attention_rollout"),  # pooled: later layers attend to pools
    "gpt2": (),  # decoders: attention is read from the last token, which they classify
    "llama": (),
    "xlnet": (),
    "modernbert-mean": (),
    "bart": ("attention", "attention_rollout"),  # embeddings: yes; attention: no
}
MORE_FAMILIES["t5"] = tuple(n for n, c in REGISTRY.items() if c.needs)  # outputs only
REFUSALS = {"bart": "encoder-decoder classifier", "t5": "encoder-decoder classifier"}


@pytest.mark.parametrize("name", sorted(MORE_FAMILIES))
def test_more_families(name: str, tmp_path) -> None:
    from test_gradient import assert_agrees_with_captum

    torch.manual_seed(0)
    model, tokenizer = family(name)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    adapter = ModelAdapter.from_pretrained(tmp_path)
    encoding = adapter.encode(TEXTS)
    # The longest input fits the model (RoBERTa-style positions start after padding_idx).
    assert adapter.max_length == (512 if name in ("xlnet", "t5") else 64)  # no limit there
    with pytest.warns(TruncationWarning):
        [long] = make_explainer("occlusion", adapter).explain(
            [" ".join(["the movie"] * (adapter.max_length // 2 + 10))]
        )
    assert len(long.tokens) == adapter.max_length
    assert all(math.isfinite(s) for s in long.scores)
    for method in sorted(REGISTRY):
        if name in REFUSALS and method in MORE_FAMILIES[name]:  # refused when made
            with pytest.raises(InvalidParameterError, match=REFUSALS[name]):
                make_explainer(method, adapter, **params_for(method))
            continue
        explainer = make_explainer(method, adapter, **params_for(method))
        if method in MORE_FAMILIES[name]:
            with pytest.raises(InvalidParameterError, match="does not compute full self-att"):
                explainer.explain(TEXTS)
            continue
        if name in ("funnel", "deberta-v3", "modernbert-mean") and method == "grad_x_input":
            # Their embeddings are LayerNorm(word embedding), no positions: zero exactly
            # (see "What grad_x_input measures" in the README).
            with pytest.warns(UninformativeScoresWarning):
                results = explainer.explain(TEXTS)
            assert all(e.quality.get("uninformative") for e in results)
            continue
        results = explainer.explain(TEXTS)
        for e, tokens in zip(results, encoding.tokens, strict=True):
            assert list(e.tokens) == tokens, method
            assert all(math.isfinite(s) for s in e.scores), method
        if method not in ("lime", "shap", "information"):  # sampled: not bit-equal alone
            for text, batched in zip(TEXTS, results, strict=True):  # padded and not
                [alone] = explainer.explain([text])
                scale = np.abs(batched.scores).max()
                np.testing.assert_allclose(alone.scores, batched.scores, atol=1e-4 * scale + 1e-7)
        if method == "attention":  # [CLS]'s attention over the tokens: a distribution
            for e in results:
                assert sum(e.scores) == pytest.approx(1.0, abs=1e-4)
                assert e.quality["read_from"] == (
                    "last token"
                    if name in ("gpt2", "llama", "xlnet")
                    else "mean of the tokens"
                    if name == "modernbert-mean"
                    else "first token"
                )
    if name == "t5":
        pass  # no gradient methods
    elif name == "bart":
        _bart_agrees_with_captum(adapter, TEXTS, n_steps=8)
    elif name == "xlnet":  # its embedding layer's output is [length, batch, dim]
        _agrees_with_captum_on_embeddings(adapter, TEXTS, n_steps=8)
    else:
        assert_agrees_with_captum(adapter, TEXTS, n_steps=8)
    if adapter.pools_last_token or name in ("bart", "t5"):  # XLNet's tokenizers pad on the left
        # predictions of a padded batch (for BART with a pair in it, which transformers
        # refuses to batch) = transformers' own, one text at a time
        plain, _ = family(name)
        plain.load_state_dict(adapter.model.state_dict())
        items: list[Any] = [*TEXTS, ("the movie was awful", "good")]
        with torch.no_grad():
            one_by_one = [
                plain.eval()(
                    **tokenizer(
                        *(item if isinstance(item, tuple) else (item,)), return_tensors="pt"
                    )
                ).logits
                for item in items
            ]
            torch.testing.assert_close(adapter.logits(adapter.encode(items)), torch.cat(one_by_one))
    if name == "bart":  # no hidden states: information on the logits, not on a layer
        with pytest.raises(InvalidParameterError, match="layer='logits' or 'pooled'"):
            make_explainer("information", adapter, layer=1)
        for layer in ("logits", "pooled"):
            make_explainer("information", adapter, layer=layer, max_steps=2).explain(TEXTS[:1])
    if name == "funnel":  # a layer's output has fewer positions than the input has tokens
        with pytest.raises(InvalidParameterError, match="positions='cls'"):
            make_explainer("information", adapter, layer=2, max_steps=2).explain(TEXTS[:1])
        make_explainer("information", adapter, layer=2, positions="cls", max_steps=2).explain(
            TEXTS[:1]
        )


def test_decoder_classifiers_from_two_threads() -> None:
    """Each call reads its own rows' last tokens, whichever thread runs the model too."""
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    model, tokenizer = family("llama")
    adapter = ModelAdapter(model.eval(), tokenizer)
    batches = [adapter.encode(TEXTS[:2]), adapter.encode(TEXTS[2:]), adapter.encode(TEXTS)]
    with torch.no_grad():
        alone = [adapter.logits(b) for b in batches]

        def run(i: int) -> torch.Tensor:
            return adapter.logits(batches[i % 3])

        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(run, range(24)))
    for i, logits in enumerate(together):
        torch.testing.assert_close(logits, alone[i % 3])


def _bart_agrees_with_captum(adapter: ModelAdapter, texts: list[str], n_steps: int) -> None:
    """BART's word embeddings feed the encoder and, one place to the right, the decoder.

    Captum's LayerIntegratedGradients on both embedding layers at once (the decoder's
    baseline is the shifted baseline ids, as BART shifts any ids) gives each token's
    attribution as its encoder position's plus the next decoder position's.
    """
    from captum.attr import LayerIntegratedGradients

    encoding = adapter.encode(texts)
    ours = make_explainer("integrated_gradients", adapter, n_steps=n_steps).explain(texts)
    targets = [e.target for e in ours]
    bart = adapter.model.model

    def forward_ids(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return adapter.model(input_ids=ids, attention_mask=mask).logits

    keep = encoding.special_mask() | (encoding.attention_mask == 0)
    ids = encoding.input_ids
    baselines = torch.where(keep, ids, torch.full_like(ids, adapter.pad_token_id))
    with warnings.catch_warnings():  # "multiple layers": independent ones here
        warnings.simplefilter("ignore", UserWarning)
        lig = LayerIntegratedGradients(
            forward_ids, [bart.encoder.embed_tokens, bart.decoder.embed_tokens]
        )
    encoder, decoder = lig.attribute(
        ids,
        baselines=baselines,
        additional_forward_args=(encoding.attention_mask,),
        target=targets,
        n_steps=n_steps,
        method="gausslegendre",
    )
    summed = encoder.sum(-1) + torch.roll(decoder.sum(-1), -1, dims=1)  # token j: decoder j+1
    for i, e in enumerate(ours):
        n = encoding.lengths[i]
        reference = summed[i, :n].detach().double().numpy()
        reference[n - 1] = encoder.sum(-1)[i, n - 1].item()  # the last token feeds no decoder step
        scale = np.linalg.norm(reference)
        assert scale > 0
        assert np.abs(np.asarray(e.scores) - reference).max() <= 1e-4 * scale, (e.text,)


def _agrees_with_captum_on_embeddings(
    adapter: ModelAdapter, texts: list[str], n_steps: int
) -> None:
    """Captum's IntegratedGradients on transformers' model fed word embeddings, one text
    at a time (no padding), against ours computed in a padded batch."""
    from captum.attr import IntegratedGradients as CaptumIG

    ours = make_explainer("integrated_gradients", adapter, n_steps=n_steps).explain(texts)
    for text, e in zip(texts, ours, strict=True):
        encoding = adapter.encode([text])
        ids = encoding.input_ids
        keep = encoding.special_mask()
        baseline_ids = torch.where(keep, ids, torch.full_like(ids, adapter.pad_token_id))
        with torch.no_grad():
            inputs = adapter.word_embeddings(ids)
            baseline = adapter.word_embeddings(baseline_ids)

        def forward(embeds: torch.Tensor) -> torch.Tensor:
            mask = torch.ones(embeds.shape[:2], dtype=torch.long)
            return adapter.model(inputs_embeds=embeds, attention_mask=mask).logits

        attributions = CaptumIG(forward).attribute(
            inputs, baselines=baseline, target=e.target, n_steps=n_steps, method="gausslegendre"
        )
        reference = attributions.sum(-1)[0].detach().double().numpy()
        scale = np.linalg.norm(reference)
        assert scale > 0
        assert np.abs(np.asarray(e.scores) - reference).max() <= 1e-4 * scale, (text,)


def test_attention_of_a_mean_pooling_classifier_is_the_mean_over_its_tokens() -> None:
    torch.manual_seed(0)
    model, tokenizer = family("modernbert-mean")
    adapter = ModelAdapter(model.eval(), tokenizer)
    assert adapter.pools_mean and not adapter.pools_last_token
    encoding = adapter.encode(TEXTS)
    with torch.no_grad():
        last = adapter.forward(encoding, output_attentions=True).attentions[-1].mean(1)
    results = make_explainer("attention", adapter).explain(TEXTS)
    for i, e in enumerate(results):
        n = encoding.lengths[i]
        expected = last[i, :n, :n].mean(0).numpy()  # every real query row alike
        np.testing.assert_allclose(e.scores, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["bert", "gpt2", "modernbert-mean"])
def test_information_reads_where_the_classifier_reads(name: str) -> None:
    from textlens.explainers.information import ModelState

    torch.manual_seed(0)
    model, tokenizer = family(name)
    adapter = ModelAdapter(model.eval(), tokenizer)
    encoding = adapter.encode(TEXTS)
    embeds = adapter.word_embeddings(encoding.input_ids)
    with torch.no_grad():
        read = ModelState(adapter, 1, "cls")(encoding, embeds)[:, 0]
        states = ModelState(adapter, 1, "all")(encoding, embeds)
    for i, n in enumerate(encoding.lengths):
        expected = {
            "bert": states[i, 0],
            "gpt2": states[i, n - 1],
            "modernbert-mean": states[i, :n].mean(0),
        }[name]
        torch.testing.assert_close(read[i], expected, rtol=1e-5, atol=1e-6)


def test_a_tokenizer_without_a_pad_token_pads_with_end_of_text() -> None:
    """GPT-2's tokenizer has no pad token: batches and the pad baseline use </s> (eos)."""
    torch.manual_seed(0)
    model, tokenizer = family("gpt2")
    tokenizer.pad_token = None
    assert tokenizer.pad_token_id is None
    adapter = ModelAdapter(model.eval(), tokenizer)
    assert adapter.pad_token_id == tokenizer.eos_token_id
    assert adapter.model.config.pad_token_id == tokenizer.eos_token_id
    results = make_explainer("integrated_gradients", adapter, n_steps=8).explain(TEXTS)
    for text, batched in zip(TEXTS, results, strict=True):
        [alone] = make_explainer("integrated_gradients", adapter, n_steps=8).explain([text])
        np.testing.assert_allclose(alone.scores, batched.scores, rtol=1e-4, atol=1e-6)


def test_report_says_whose_attention_a_decoder_shows() -> None:
    torch.manual_seed(0)
    model, tokenizer = family("gpt2")
    adapter = ModelAdapter(model.eval(), tokenizer)
    [e] = make_explainer("attention", adapter).explain(TEXTS[:1])
    assert "attention of the last token, which the classifier reads" in e.to_html()


@pytest.mark.parametrize("name", ["roberta", "mpnet", "longformer", "bert"])
def test_pad_masking_keeps_every_token_in_its_position(name: str) -> None:
    """Occlusion with ``masking='pad'`` puts the pad token in the occluded token's place.

    RoBERTa-style embeddings number positions from the ids, skipping pad ids: left to
    transformers, a pad in the middle would move every later token one position back.
    The reference runs the model with the positions of the unperturbed text.
    """
    torch.manual_seed(0)
    model, tokenizer = (family if name in ("roberta", "bert") else _more_family)(name)
    with torch.no_grad():  # outputs that depend on the positions, as a trained model's do
        model.base_model.embeddings.position_embeddings.weight.normal_(0.0, 1.0)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, 0.3)
    adapter = ModelAdapter(model.eval(), tokenizer)
    text = "the movie was great fun and the cast was fine"
    occlusion = make_explainer(
        "occlusion", adapter, features="token", masking="pad", output="logit"
    )
    [e] = occlusion.explain([text])
    batch = adapter.encode([text])
    ids = batch.input_ids
    n = ids.shape[1]
    kwargs = dict(batch.model_inputs)
    padding_idx = getattr(model.base_model.embeddings, "padding_idx", None)
    if name != "bert":
        kwargs["position_ids"] = torch.arange(n)[None] + padding_idx + 1
    if name == "longformer":
        kwargs["global_attention_mask"] = torch.nn.functional.one_hot(torch.tensor([0]), n)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=batch.attention_mask, **kwargs).logits[0]
        target = int(full.argmax())
        expected = []
        for j in range(1, n - 1):  # the special tokens are never features
            occluded = ids.clone()
            occluded[0, j] = adapter.pad_token_id
            out = model(input_ids=occluded, attention_mask=batch.attention_mask, **kwargs)
            expected.append(float(full[target] - out.logits[0, target]))
    assert max(map(abs, expected)) > 5e-3, "the test model's outputs should depend on the tokens"
    np.testing.assert_allclose(e.scores[1 : n - 1], expected, rtol=1e-4, atol=5e-6)
