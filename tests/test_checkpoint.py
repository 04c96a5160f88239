"""Model folders: the models read and write them without wxb.hub (one-way dependency), and a
checkpoint transformers loads loads here too, special token ids outside the vocabulary
included."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

import wxb
from wxb.errors import ConfigError
from wxb.models import checkpoint
from wxb.models.bert import BertConfig
from wxb.models.llama import LlamaConfig
from wxb.models.rnn import RNNConfig
from wxb.models.transformer import TransformerConfig

transformers.logging.set_verbosity_error()

MODELS_DIR = Path(wxb.__file__).parent / "models"


def imported_modules(source: str) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names, anywhere in the source (late
    imports inside functions included), with ``from wxb import hub`` as ``wxb.hub``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_no_model_module_imports_the_hub():
    files = sorted(MODELS_DIR.glob("*.py"))
    assert len(files) >= 10
    # The scan sees late imports: it would have caught base.py's old one.
    assert "wxb.hub" in imported_modules("def f():\n    from wxb.hub import save_pretrained\n")
    for path in files:
        found = {m for m in imported_modules(path.read_text()) if m.startswith("wxb.hub")}
        assert not found, f"{path.name} imports {found}"


def test_saving_and_loading_a_model_never_imports_the_hub(tmp_path):
    script = f"""
import sys, torch
from wxb.models.gpt2 import GPT2Config, GPT2LMHeadModel
model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=1, n_positions=16,
                                   vocab_size=30, bos_token_id=1, eos_token_id=2))
model.save_pretrained({str(tmp_path)!r})
again = GPT2LMHeadModel.from_pretrained({str(tmp_path)!r})
assert torch.equal(again.lm_head.weight, model.lm_head.weight)
print(sorted(m for m in sys.modules if m.startswith("wxb.")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    loaded = result.stdout
    assert "'wxb.models.checkpoint'" in loaded and "'wxb.hub'" not in loaded


def test_the_hub_keeps_its_names():
    from wxb import hub
    from wxb.hub import (  # noqa: F401  (the names other modules import from here)
        CONVERSIONS,
        convert_folder,
        from_pretrained,
        load_pretrained,
        load_weights,
        read_state_dict,
        resolve,
        save_pretrained,
    )

    assert hub.load_weights is checkpoint.load_weights
    assert hub.save_pretrained is checkpoint.save_pretrained
    assert hub.load_pretrained is checkpoint.load_pretrained
    assert set(hub.__all__) <= set(dir(hub))


def small_vocab_gpt2(tmp_path):
    """transformers' GPT-2 with 100 tokens and its default bos/eos 50256."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2,
                                     n_positions=32)
    assert config.eos_token_id == config.bos_token_id == 50256
    ref = transformers.GPT2LMHeadModel(config).eval()
    ref.save_pretrained(tmp_path)
    return ref


@pytest.mark.filterwarnings("ignore:GPT2Config. bos_token_id")
def test_a_gpt2_whose_eos_is_outside_its_vocabulary_loads_and_generates(tmp_path):
    ref = small_vocab_gpt2(tmp_path)
    with pytest.warns(UserWarning, match="eos_token_id 50256 is outside the vocabulary of 100 "
                                         "tokens"):
        ours = wxb.from_pretrained(tmp_path).eval()
    assert ours.config.eos_token_id == 50256  # kept as the checkpoint says
    ids = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (ours(ids).logits - ref(ids).logits).abs().max() <= 1e-5
        theirs = ref.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                              do_sample=False)
    mine = wxb.generate(ours, ids, max_new_tokens=6)
    # The eos can never come, so every row runs to max_new_tokens, as in transformers.
    assert mine.shape == (2, 15) and torch.equal(mine, theirs)


def test_the_warning_is_one_line_per_field(tmp_path):
    small_vocab_gpt2(tmp_path)
    with pytest.warns(UserWarning) as record:
        wxb.from_pretrained(tmp_path)
    messages = sorted(str(w.message) for w in record)
    assert messages == [
        "GPT2Config: bos_token_id 50256 is outside the vocabulary of 100 tokens, so the model "
        "never generates it",
        "GPT2Config: eos_token_id 50256 is outside the vocabulary of 100 tokens, so the model "
        "never generates it"]


def test_llama_eos_list_outside_the_vocabulary_warns_for_each():
    with pytest.warns(UserWarning) as record:
        LlamaConfig(vocab_size=50, hidden_size=16, num_attention_heads=2,
                    num_hidden_layers=1, intermediate_size=32, eos_token_id=[2, 60, 70])
    assert [str(w.message).split(" is ")[0] for w in record] == [
        "LlamaConfig: eos_token_id 60", "LlamaConfig: eos_token_id 70"]


@pytest.mark.parametrize("make,message", [
    (lambda: BertConfig(vocab_size=10, pad_token_id=10),
     "BertConfig: pad_token_id 10 is outside the vocabulary of 10 tokens, and it is the "
     "embeddings' padding row"),
    (lambda: TransformerConfig(vocab_size=50, decoder_vocab_size=40, pad_token_id=45,
                               share_encoder_decoder_embeddings=False),
     "TransformerConfig: pad_token_id 45 is outside the vocabulary of 40 tokens"),
    (lambda: RNNConfig(vocab_size=10, unk_token_id=12, word_dropout=0.1),
     "RNNConfig: unk_token_id 12 is outside the vocabulary of 10 tokens"),
])
def test_a_padding_row_outside_the_vocabulary_is_refused(make, message):
    """An embedding's padding_idx must be one of its rows: transformers refuses it too."""
    with pytest.raises(ConfigError) as error:
        make()
    assert message in str(error.value) and "\n" not in str(error.value)


def test_transformers_refuses_a_padding_row_outside_the_vocabulary_too():
    config = transformers.BertConfig(vocab_size=10, pad_token_id=10, hidden_size=8,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=8)
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        transformers.BertModel(config)


def test_an_unused_unk_outside_the_vocabulary_is_accepted():
    assert RNNConfig(vocab_size=10, unk_token_id=12).unk_token_id == 12
