"""wxb's output records behave as transformers' ModelOutput: by attribute, by name, by position
(counting only the fields that are set), as a tuple and as a mapping of the set fields."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import modeling_outputs as hf_outputs

import wxb
from wxb.generation import GenerateOutput
from wxb.models import outputs
from wxb.models.bert import BertConfig, BertModel

transformers.logging.set_verbosity_error()

LOSS, LOGITS = torch.tensor(0.5), torch.arange(6.0).view(1, 2, 3)
HIDDEN = (torch.zeros(1, 2, 4), torch.ones(1, 2, 4))


@pytest.mark.parametrize("fields", [
    dict(logits=LOGITS),
    dict(loss=LOSS, logits=LOGITS),
    dict(logits=LOGITS, hidden_states=HIDDEN),
    dict(loss=LOSS, logits=LOGITS, attentions=HIDDEN),
], ids=["logits", "loss+logits", "logits+hidden", "loss+logits+attentions"])
def test_indexing_equals_transformers_model_output(fields):
    ours = outputs.CausalLMOutputWithPast(**fields)
    theirs = hf_outputs.CausalLMOutputWithPast(**fields)
    assert list(ours.keys()) == list(theirs.keys()) == list(ours) == list(theirs)
    assert len(ours) == len(theirs) == len(fields)
    assert ours[0] is theirs[0] is ours.to_tuple()[0]
    assert ours[0] is (fields.get("loss", LOGITS))
    assert ours[-1] is theirs[-1]
    assert all(a is b for a, b in zip(ours.to_tuple(), theirs.to_tuple(), strict=True))
    assert all(a is b for a, b in zip(ours[1:], theirs[1:], strict=True))
    assert all(a is b for a, b in zip(ours.values(), theirs.values(), strict=True))
    assert [k for k, _ in ours.items()] == [k for k, _ in theirs.items()]
    assert ours["logits"] is theirs["logits"] is LOGITS
    assert ("loss" in ours) == ("loss" in theirs) == ("loss" in fields)
    assert 0 not in ours and 0 not in theirs
    for missing in ("hidden_states" if "hidden_states" not in fields else "attentions", "nope"):
        for out in (ours, theirs):
            with pytest.raises(KeyError):
                out[missing]
    assert ours.get("nope", 7) == theirs.get("nope", 7) == 7
    assert dict(ours).keys() == dict(theirs).keys()


def test_a_field_set_later_takes_its_place_in_field_order():
    ours = outputs.SequenceClassifierOutput(logits=LOGITS)
    theirs = hf_outputs.SequenceClassifierOutput(logits=LOGITS)
    for out in (ours, theirs):
        with pytest.raises(IndexError):
            out[1]
    ours.loss = LOSS
    # transformers appends a field set later to its dict (logits, loss); the field order is
    # what a forward pass that set both at once would give, so wxb keeps it.
    assert ours[0] is LOSS and ours[1] is LOGITS and list(ours) == ["loss", "logits"]


def gpt2_pair(tmp_path):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=32, n_head=2, n_layer=2, n_positions=32,
                                     vocab_size=60, bos_token_id=1, eos_token_id=2)
    ref = transformers.GPT2LMHeadModel(config).eval()
    ref.save_pretrained(tmp_path)
    return wxb.from_pretrained(tmp_path).eval(), ref


def test_model_output_zero_is_the_loss_with_labels_else_the_logits(tmp_path):
    ours, ref = gpt2_pair(tmp_path)
    ids = torch.randint(0, 60, (2, 9), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        a, b = ours(**batch), ref(**batch, use_cache=False)
        assert a[0] is a.logits and torch.allclose(a[0], b[0], atol=1e-5)
        assert list(a.keys()) == list(b.keys()) == ["logits"]
        a, b = ours(**batch, labels=ids), ref(**batch, labels=ids, use_cache=False)
    assert a[0] is a.loss and torch.allclose(a[0], b[0], atol=1e-6)
    assert list(a.keys()) == list(b.keys()) == ["loss", "logits"]
    assert torch.allclose(a["logits"], b["logits"], atol=1e-5)
    loss, logits = a.to_tuple()
    assert loss is a.loss and logits is a.logits


def test_bert_outputs_index_as_transformers(tmp_path):
    """``model(**batch)[0]`` of BertModel used to raise TypeError: not subscriptable."""
    torch.manual_seed(0)
    shape = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=48, max_position_embeddings=32)
    ref = transformers.BertModel(transformers.BertConfig(**shape)).eval()
    ref.save_pretrained(tmp_path)
    ours = wxb.from_pretrained(tmp_path).eval()
    assert isinstance(ours, BertModel)
    ids = torch.randint(1, 50, (2, 7), generator=torch.Generator().manual_seed(2))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "token_type_ids": torch.zeros_like(ids)}
    with torch.no_grad():
        a, b = ours(**batch), ref(**batch)
    assert list(a.keys()) == list(b.keys()) == ["last_hidden_state", "pooler_output"]
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)
    assert torch.allclose(a["pooler_output"], b.pooler_output, atol=1e-5)
    assert BertModel(BertConfig(**shape), add_pooling_layer=False)(ids).to_tuple()[0].shape \
        == (2, 7, 32)


@pytest.mark.parametrize("name,extra,keys", [
    ("BertForPreTraining", {}, ["prediction_logits", "seq_relationship_logits"]),
    ("BertForQuestionAnswering", {"start_positions": torch.tensor([1, 2]),
                                  "end_positions": torch.tensor([3, 4])},
     ["loss", "start_logits", "end_logits"]),
    ("BertForTokenClassification", {"labels": torch.ones(2, 7, dtype=torch.long)},
     ["loss", "logits"]),
    ("BertForSequenceClassification", {}, ["logits"]),
])
def test_bert_heads_keys_equal_transformers(name, extra, keys, tmp_path):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=4, intermediate_size=48,
                                     max_position_embeddings=32)
    ref = getattr(transformers, name)(config).eval()
    ref.save_pretrained(tmp_path)
    ours = wxb.from_pretrained(tmp_path).eval()
    ids = torch.randint(1, 50, (2, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = ours(ids, **extra), ref(ids, **extra)
    assert list(a.keys()) == list(b.keys()) == keys
    for x, y in zip(a.to_tuple(), b.to_tuple(), strict=True):
        assert torch.allclose(x, y, atol=1e-5)


def test_marian_output_keys_equal_transformers(tmp_path):
    torch.manual_seed(0)
    config = transformers.MarianConfig(vocab_size=40, d_model=16, encoder_layers=1,
                                       decoder_layers=1, encoder_attention_heads=2,
                                       decoder_attention_heads=2, encoder_ffn_dim=32,
                                       decoder_ffn_dim=32, max_position_embeddings=32,
                                       pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    ref = transformers.MarianMTModel(config).eval()
    ref.save_pretrained(tmp_path)
    ours = wxb.from_pretrained(tmp_path).eval()
    ids = torch.randint(2, 40, (2, 6), generator=torch.Generator().manual_seed(4))
    labels = torch.randint(2, 40, (2, 4), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        a, b = ours(ids, labels=labels), ref(input_ids=ids, labels=labels, use_cache=False)
    assert list(a.keys()) == list(b.keys()) == ["loss", "logits", "encoder_last_hidden_state"]
    for x, y in zip(a.to_tuple(), b.to_tuple(), strict=True):
        assert torch.allclose(x, y, atol=1e-5)


def test_generate_output_is_a_model_output(tmp_path):
    ours, _ = gpt2_pair(tmp_path)
    out = wxb.generate(ours, torch.tensor([[3, 4, 5]]), max_new_tokens=4,
                       return_dict_in_generate=True)
    assert isinstance(out, GenerateOutput) and list(out) == ["sequences"]
    assert out[0] is out.sequences is out["sequences"] and out.sequences.shape == (1, 7)
    beams = wxb.generate(ours, torch.tensor([[3, 4, 5]]), max_new_tokens=4, num_beams=2,
                         return_dict_in_generate=True)
    assert list(beams) == ["sequences", "sequences_scores"] and beams[1].shape == (1,)
