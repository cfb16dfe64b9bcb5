"""The model adapter: loading folders, encoding, truncation, targets, batching."""

from __future__ import annotations

import copy
import json
import re
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import FILLER, NEGATIVE, POSITIVE, SUBWORDS, TEXTS, tiny_bert, wordpiece_tokenizer

from textlens.errors import (
    ExplanationError,
    InvalidInputError,
    InvalidParameterError,
    InvalidTargetError,
    ModelLoadError,
    TruncationWarning,
)
from textlens.explainers import make_explainer
from textlens.model import ModelAdapter, load_model, pack_batches

VOCAB = FILLER + POSITIVE + NEGATIVE + SUBWORDS


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder written by save_pretrained (model and tokenizer)."""
    folder = tmp_path_factory.mktemp("saved") / "tiny-bert"
    tokenizer = wordpiece_tokenizer(VOCAB)
    tiny_bert(len(tokenizer), seed=4).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _copy_without(saved: Path, target: Path, *names: str) -> Path:
    target.mkdir()
    for path in saved.iterdir():
        if path.name not in names:
            (target / path.name).write_bytes(path.read_bytes())
    return target


# ---------------------------------------------------------------------- loading
def test_from_pretrained_loads_a_saved_folder(saved: Path) -> None:
    model = ModelAdapter.from_pretrained(saved)
    assert model.model_id == str(saved)
    assert model.labels == ["negative", "positive"]
    assert model.max_length == 64
    assert not model.model.training
    assert not any(p.requires_grad for p in model.model.parameters())
    reference = tiny_bert(len(wordpiece_tokenizer(VOCAB)), seed=4).eval()
    encoding = model.encode(TEXTS)
    with torch.no_grad():
        expected = reference(input_ids=encoding.input_ids, attention_mask=encoding.attention_mask)
        torch.testing.assert_close(model.logits(encoding), expected.logits)
    [e] = make_explainer("integrated_gradients", load_model(saved), n_steps=4).explain(TEXTS[:1])
    assert e.model_id == str(saved)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_checkpoints_are_explained_in_float32(
    planted_adapter: ModelAdapter, tmp_path: Path, dtype: torch.dtype
) -> None:
    """A checkpoint saved in float16/bfloat16 gives the explanations of its float32 widening.

    In bfloat16, saliency failed (numpy has no bfloat16) and integrated gradients summed
    its path in bfloat16: the planted word's score came out with the wrong sign.
    """
    half = copy.deepcopy(planted_adapter.model).to(dtype)
    half.save_pretrained(tmp_path)
    planted_adapter.tokenizer.save_pretrained(tmp_path)
    widened = ModelAdapter(copy.deepcopy(half).float(), planted_adapter.tokenizer)
    loaded = load_model(tmp_path)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    in_memory = ModelAdapter(copy.deepcopy(half), planted_adapter.tokenizer)
    assert {p.dtype for p in in_memory.model.parameters()} == {torch.float32}
    for method in ("saliency", "integrated_gradients", "occlusion", "attention_rollout"):
        [want] = make_explainer(method, widened).explain(TEXTS[:1])
        for adapter in (loaded, in_memory):
            [got] = make_explainer(method, adapter).explain(TEXTS[:1])
            np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-6)


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelLoadError, match=re.escape(f"Model folder {missing} does not exist")):
        ModelAdapter.from_pretrained(missing)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"model_type": "no-such-model"}, "names the model type 'no-such-model', which "),
        ({"id2label": {"0": "a", "1": "b", "2": "c"}, "label2id": {"a": 0, "b": 1, "c": 2}},
         "do not fit the model its config.json describes"),
    ],
)  # fmt: skip
def test_a_config_that_does_not_fit_is_one_line_with_the_fix(
    saved: Path, tmp_path: Path, edit: dict, message: str
) -> None:
    """transformers' own messages span paragraphs, or point at a report it never printed."""
    folder = _copy_without(saved, tmp_path / "edited")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(ModelLoadError, match=re.escape(message)) as info:
        ModelAdapter.from_pretrained(folder)
    assert "\n" not in str(info.value) and "above report" not in str(info.value)


def test_file_instead_of_folder(saved: Path) -> None:
    file = saved / "config.json"
    with pytest.raises(ModelLoadError) as info:
        ModelAdapter.from_pretrained(file)
    assert str(file) in str(info.value) and "is a file" in str(info.value)
    assert isinstance(info.value, OSError)


@pytest.mark.parametrize(
    "removed, missing",
    [
        (("model.safetensors",), "weights (model.safetensors or pytorch_model.bin)"),
        (("tokenizer.json",), "tokenizer files (tokenizer.json or vocab)"),
        (("config.json",), "config.json"),
    ],
)
def test_incomplete_folder_names_what_is_missing(saved, tmp_path, removed, missing) -> None:
    folder = _copy_without(saved, tmp_path / "incomplete", *removed)
    with pytest.raises(ModelLoadError) as info:
        ModelAdapter.from_pretrained(folder)
    message = str(info.value)
    assert str(folder) in message
    assert f"is missing {missing}" in message


def test_corrupt_weights(saved: Path, tmp_path: Path) -> None:
    folder = _copy_without(saved, tmp_path / "corrupt")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="Could not load a sequence-classification model from"):
        ModelAdapter.from_pretrained(folder)


def test_a_base_encoder_without_a_trained_head_is_refused(saved: Path, tmp_path: Path) -> None:
    """A BertModel checkpoint would load with a random classifier: noise, not a model."""
    from transformers import BertModel

    folder = _copy_without(saved, tmp_path / "base", "model.safetensors")
    classifier = ModelAdapter.from_pretrained(saved).model
    BertModel(classifier.config).save_pretrained(folder)
    with pytest.raises(ModelLoadError) as info:
        ModelAdapter.from_pretrained(folder)
    message = str(info.value)
    assert str(folder) in message
    assert "classifier.bias, classifier.weight" in message and "BertModel checkpoint" in message


CUSTOM_CONFIG = """
from transformers import BertConfig


class DoubledConfig(BertConfig):
    model_type = "doubled-bert"
"""
CUSTOM_MODEL = """
from transformers import BertForSequenceClassification

from .configuration_doubled import DoubledConfig


class DoubledForSequenceClassification(BertForSequenceClassification):
    \"\"\"BERT whose logits are doubled: shows that this file, not BERT's code, ran.\"\"\"

    config_class = DoubledConfig

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.logits = 2 * out.logits
        return out
"""


def _custom_code_folder(saved: Path, target: Path, prefix: str = "") -> Path:
    """``saved`` as a model with its own code: config.json's auto_map names two .py files."""
    import json

    folder = _copy_without(saved, target)
    (folder / "configuration_doubled.py").write_text(CUSTOM_CONFIG, encoding="utf-8")
    (folder / "modeling_doubled.py").write_text(CUSTOM_MODEL, encoding="utf-8")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["model_type"] = "doubled-bert"
    config["architectures"] = ["DoubledForSequenceClassification"]
    config["auto_map"] = {
        "AutoConfig": f"{prefix}configuration_doubled.DoubledConfig",
        "AutoModelForSequenceClassification": (
            f"{prefix}modeling_doubled.DoubledForSequenceClassification"
        ),
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_custom_model_code_runs_only_when_trusted(saved: Path, tmp_path: Path) -> None:
    import textlens as tl
    from textlens.cli import main

    folder = _custom_code_folder(saved, tmp_path / "custom")
    with pytest.raises(ModelLoadError) as info:  # refused at once: no prompt on a terminal
        tl.load(folder)
    message = str(info.value)
    assert "configuration_doubled.py, modeling_doubled.py" in message
    assert "trust_remote_code=True" in message and "--trust-remote-code" in message

    model = tl.load(folder, trust_remote_code=True)
    assert type(model.model).__name__ == "DoubledForSequenceClassification"
    plain = ModelAdapter.from_pretrained(saved)
    encoding = model.encode(TEXTS)
    torch.testing.assert_close(model.logits(encoding), 2 * plain.logits(encoding))
    [e] = tl.explain(model, TEXTS[:1], method="integrated_gradients", n_steps=16)
    [half] = tl.explain(plain, TEXTS[:1], method="integrated_gradients", n_steps=16)
    np.testing.assert_allclose(e.scores, 2 * np.asarray(half.scores), rtol=1e-4, atol=1e-7)

    assert main(["explain", str(folder), TEXTS[0], "-m", "saliency"]) == 2
    args = ["explain", str(folder), TEXTS[0], "-m", "saliency", "--format", "json"]
    assert main([*args, "--trust-remote-code"]) == 0


def test_custom_code_from_another_repository_is_refused(saved: Path, tmp_path: Path) -> None:
    folder = _custom_code_folder(saved, tmp_path / "elsewhere", prefix="someone/bert-code--")
    with pytest.raises(ModelLoadError, match=r"another repository \(someone/bert-code"):
        ModelAdapter.from_pretrained(folder, trust_remote_code=True)


def test_slow_tokenizer_and_bad_device() -> None:
    tokenizer = wordpiece_tokenizer(VOCAB)
    model = tiny_bert(len(tokenizer))
    with pytest.raises(ModelLoadError, match="needs a fast tokenizer"):
        ModelAdapter(model, SimpleNamespace(is_fast=False))
    with pytest.raises(ModelLoadError, match="Unknown device 'gpu'"):
        ModelAdapter(model, tokenizer, device="gpu")
    for other in ("mps", "xpu", "meta"):  # devices torch names that textlens does not run on
        with pytest.raises(ModelLoadError, match=f"Device '{other}' is not supported"):
            ModelAdapter(model, tokenizer, device=other)
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            ModelAdapter(model, tokenizer, device="cuda")


# ---------------------------------------------------------------------- encoding
def test_encoding_fields(tiny_adapter: ModelAdapter) -> None:
    encoding = tiny_adapter.encode(TEXTS)
    assert encoding.lengths == [len(t) for t in encoding.tokens]
    assert encoding.input_ids.shape == (len(TEXTS), max(encoding.lengths))
    assert encoding.attention_mask.sum(1).tolist() == encoding.lengths
    assert encoding.truncated == [0] * len(TEXTS)
    tokens = encoding.tokens[2]
    assert tokens == ["[CLS]", "[UNK]", "play", "##ing", "[SEP]"]
    assert encoding.special[2] == [True, False, False, False, True]
    assert encoding.word_ids[2] == [None, 0, 1, 1, None]
    assert encoding.offsets[2] == [(0, 0), (0, 12), (13, 17), (17, 20), (0, 0)]
    special = encoding.special_mask()
    assert special.sum().item() == 2 * len(TEXTS)  # [CLS] and [SEP]; padding is not special
    assert not special[encoding.attention_mask == 0].any()


def test_select_repeats_and_repads(tiny_adapter: ModelAdapter) -> None:
    encoding = tiny_adapter.encode(TEXTS)
    sub = encoding.select([2, 0, 2])
    assert sub.texts == [TEXTS[2], TEXTS[0], TEXTS[2]]
    assert sub.lengths == [encoding.lengths[i] for i in (2, 0, 2)]
    width = max(sub.lengths)
    assert sub.input_ids.shape == (3, width)
    assert width < encoding.input_ids.shape[1]  # re-padded to the selection's longest
    for row, i in enumerate([2, 0, 2]):
        assert torch.equal(sub.input_ids[row], encoding.input_ids[i, :width])
        assert torch.equal(sub.attention_mask[row], encoding.attention_mask[i, :width])
        assert sub.tokens[row] == encoding.tokens[i]
        assert sub.word_ids[row] == encoding.word_ids[i]
    with torch.no_grad():  # padding never changes a text's logits
        torch.testing.assert_close(tiny_adapter.logits(sub)[1], tiny_adapter.logits(encoding)[0])


def test_pack_batches_respects_the_budget() -> None:
    lengths = [5, 30, 12, 7, 30, 2, 64]
    batches = pack_batches(lengths, max_batch_tokens=64, rows_per_item=2)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert lengths[batch[0]] == longest  # longest first
        assert len(batch) == 1 or 2 * len(batch) * longest <= 64
    assert [6] in batches  # too long for the budget: alone


def test_pack_batches_pad_slack_keeps_lengths_together() -> None:
    lengths = [46, 13, 44, 20, 42, 19, 30, 14]
    assert pack_batches(lengths, max_batch_tokens=10_000) == [[0, 2, 4, 6, 3, 5, 7, 1]]
    batches = pack_batches(lengths, max_batch_tokens=10_000, pad_slack=0.1)
    assert [[lengths[i] for i in b] for b in batches] == [[46, 44, 42], [30], [20, 19], [14, 13]]


def test_predict_proba_and_forward_repeat(tiny_adapter: ModelAdapter) -> None:
    encoding = tiny_adapter.encode(TEXTS)
    probabilities = tiny_adapter.predict_proba(encoding, max_batch_tokens=16)
    assert probabilities.shape == (len(TEXTS), 2)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-6)
    with torch.no_grad():
        logits = tiny_adapter.logits(encoding)
        np.testing.assert_allclose(probabilities, logits.softmax(-1).numpy(), rtol=1e-5)
        embeds = tiny_adapter.word_embeddings(encoding.input_ids).repeat_interleave(3, dim=0)
        repeated = tiny_adapter.logits(encoding, inputs_embeds=embeds, repeat=3)
    torch.testing.assert_close(repeated[::3], logits)


def test_attention_weights_and_fast_passes_from_two_threads(tiny_adapter: ModelAdapter) -> None:
    # Forward-only passes run on SDPA, attention passes on eager attention: one thread's
    # switch must never leave the other's call on the wrong implementation.
    assert tiny_adapter._fast_attention == "sdpa"
    encoding = tiny_adapter.encode(TEXTS)
    with torch.no_grad():
        expected = tiny_adapter.forward(encoding, output_attentions=True).attentions[0]
    failures: list[str] = []

    def attention_calls() -> None:
        for _ in range(40):
            with torch.no_grad():
                out = tiny_adapter.forward(encoding, output_attentions=True)
            if not out.attentions or out.attentions[0] is None:
                failures.append("no attention weights")
            elif not torch.allclose(out.attentions[0], expected, atol=1e-6):
                failures.append("different attention weights")

    def fast_calls() -> None:
        for _ in range(40):
            with torch.no_grad():
                tiny_adapter.logits(encoding)

    threads = [threading.Thread(target=f) for f in (attention_calls, fast_calls, fast_calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert tiny_adapter._attention_calls == 0


# ---------------------------------------------------------------------- truncation
def test_long_text_is_truncated_with_a_warning(tiny_adapter: ModelAdapter) -> None:
    model = ModelAdapter(tiny_adapter.model, tiny_adapter.tokenizer, model_id="short", max_length=8)
    long_text = " ".join(FILLER[:20])  # 20 words -> 22 tokens with [CLS] and [SEP]
    with pytest.warns(TruncationWarning) as caught:
        [e] = make_explainer("integrated_gradients", model, n_steps=4).explain([long_text])
    [warning] = caught
    message = str(warning.message)
    assert "Text 0 has 22 tokens but short accepts at most 8" in message
    assert "the last 14 tokens were dropped" in message
    assert e.truncated_tokens == 14
    assert len(e.tokens) == 8 and e.tokens[-1] == "[SEP]"
    assert e.to_dict()["truncated_tokens"] == 14
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [short] = make_explainer("saliency", model).explain(["the movie"])
    assert short.truncated_tokens == 0


def test_a_long_text_gets_one_warning_ours_not_transformers_too(tiny_adapter) -> None:
    import copy
    import logging

    tokenizer = copy.deepcopy(tiny_adapter.tokenizer)
    tokenizer.model_max_length = 8
    tokenizer.deprecation_warnings.clear()
    model = ModelAdapter(tiny_adapter.model, tokenizer, model_id="short", max_length=8)
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with pytest.warns(TruncationWarning):
            model.encode([" ".join(FILLER[:20])])
        with pytest.warns(TruncationWarning):  # each side of a pair is checked for tokens
            model.encode([(" ".join(FILLER[:20]), "the movie")])
    finally:
        logger.removeHandler(handler)
    assert not [m for m in logged if "Token indices sequence length" in m], logged


def test_model_failure_is_an_explanation_error(tiny_adapter: ModelAdapter) -> None:
    # max_length above the model's 64 positions (set afterwards: the constructor refuses
    # it): the model itself fails on a long text.
    model = ModelAdapter(tiny_adapter.model, tiny_adapter.tokenizer, model_id="big")
    model.max_length = 200
    with pytest.raises(ExplanationError, match="The model big failed on a batch of 1 texts"):
        make_explainer("saliency", model).explain([" ".join(FILLER * 2)])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "max_length must be an int >= 3"),
        (2, "max_length must be an int >= 3"),
        (16.0, "got 16.0"),
        (True, "got True"),
        (65, r"max_length 65 is more than the model's position embeddings allow \(64 tokens\)"),
    ],
)
def test_a_bad_max_length_is_refused(tiny_adapter: ModelAdapter, value, message) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        ModelAdapter(tiny_adapter.model, tiny_adapter.tokenizer, max_length=value)
    assert ModelAdapter(tiny_adapter.model, tiny_adapter.tokenizer, max_length=64).max_length == 64


# ---------------------------------------------------------------------- targets
def test_resolve_target(tiny_adapter: ModelAdapter) -> None:
    assert tiny_adapter.resolve_target(None, default=1) == 1
    assert tiny_adapter.resolve_target("negative", default=1) == 0
    assert tiny_adapter.resolve_target("positive", default=0) == 1
    assert tiny_adapter.resolve_target(1, default=0) == 1
    assert tiny_adapter.resolve_target(np.int64(0), default=1) == 0
    assert tiny_adapter.resolve_target("1", default=0) == 1  # from a CLI
    for bad in ("neutral", 2, -1, "-1", True, 0.0, "LABEL_0"):
        with pytest.raises(InvalidTargetError) as info:
            tiny_adapter.resolve_target(bad, default=0)
        assert str(info.value) == (
            f"Unknown target {bad!r} for model tiny-bert. Use a label name or an index: "
            "0='negative', 1='positive'."
        )


def test_targets_per_text_or_one_in_any_array_form(tiny_adapter: ModelAdapter) -> None:
    class Column:  # what a pandas Series offers: tolist, and no list type
        def __init__(self, values):
            self.values = values

        def tolist(self):
            return list(self.values)

    resolve = tiny_adapter.resolve_targets
    assert resolve(Column(["positive", "negative"]), 2) == [1, 0]  # was one "label"
    assert resolve(torch.tensor(1), 2) == [1, 1]  # logits.argmax(): was a TypeError
    assert resolve(np.array(0), 2) == [0, 0]
    assert resolve(np.array([1, 0]), 2) == [1, 0]
    assert resolve(iter(["negative", None]), 2) == [0, None]
    with pytest.raises(InvalidTargetError, match="3 targets were given for 2 texts"):
        resolve(Column([1, 0, 1]), 2)
    with pytest.raises(InvalidTargetError, match=r"Unknown target 1\.5"):
        resolve(np.array(1.5), 2)


def test_mask_token_is_required_only_when_used(tiny_adapter: ModelAdapter) -> None:
    tokenizer = wordpiece_tokenizer(VOCAB)
    tokenizer.mask_token = None
    model = ModelAdapter(tiny_adapter.model, tokenizer)
    make_explainer("integrated_gradients", model, n_steps=2).explain(TEXTS[:1])  # pad: fine
    with pytest.raises(InvalidInputError, match="has no mask token; use baseline='pad'"):
        make_explainer("integrated_gradients", model, baseline="mask").explain(TEXTS[:1])


def test_bfloat16_on_a_cpu_that_emulates_it_warns(monkeypatch) -> None:
    import warnings

    import textlens.model as model_module

    tokenizer = wordpiece_tokenizer(VOCAB)
    adapter = ModelAdapter(tiny_bert(len(tokenizer)), tokenizer)
    for native, expected in ((False, 1), (True, 0)):
        monkeypatch.setattr(model_module, "_native_cpu_bfloat16", lambda native=native: native)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with adapter.autocast("bfloat16"):
                pass
        slow = [w for w in caught if issubclass(w.category, model_module.SlowPrecisionWarning)]
        assert len(slow) == expected and (not slow or "Use float32" in str(slow[0].message))
