"""The CUDA paths: fp16 with a GradScaler, bf16, resume, parity and generation on a GPU.

CI has no GPU, so these run where one is present (the project's GPU machine); elsewhere the
module is skipped as a whole, and the same features are covered on the CPU by the other tests.
"""

from __future__ import annotations

import pytest
import torch
import transformers

import wxb
from wxb.generation import generate
from wxb.models.gpt2 import GPT2Config, GPT2LMHeadModel
from wxb.train import Trainer, TrainingArguments

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
transformers.logging.set_verbosity_error()

VOCAB = 50


class Cycles(torch.utils.data.Dataset):
    """Windows of a repeating token pattern: a model that learns it drives the loss near 0."""

    def __init__(self, n: int = 64, length: int = 24) -> None:
        pattern = torch.tensor([3, 17, 5, 42, 8, 11, 29])
        self.rows = [pattern.roll(i)[torch.arange(length) % 7] for i in range(n)]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.rows[i], "labels": self.rows[i]}


def small_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=64, n_layer=2,
                                      n_head=4, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0,
                                      bos_token_id=1, eos_token_id=2))


def train(tmp_path, steps: int, resume: bool = False, seed: int = 0, **extra):
    model = small_gpt2(seed)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=steps, learning_rate=3e-3,
                             per_device_train_batch_size=8, logging_steps=1, save_steps=10,
                             lr_scheduler_type="constant", seed=0, **extra)
    trainer = Trainer(model, args, train_dataset=Cycles())
    trainer.train(resume_from_checkpoint=resume)
    return model, trainer


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_training_on_the_gpu(tmp_path, precision):
    model, trainer = train(tmp_path, 40, **{precision: True})
    assert trainer.device.type == "cuda"
    assert next(model.parameters()).is_cuda
    assert next(model.parameters()).dtype == torch.float32  # master weights stay fp32
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[-1] < 0.2 * losses[0]
    if precision == "fp16":
        scale = trainer.scaler.get_scale()
        assert 1.0 <= scale < 2.0 ** 24
        assert (tmp_path / "checkpoint-40" / "scaler.pt").is_file()


def test_fp16_resume_on_the_gpu_continues_the_same_run(tmp_path):
    full, _ = train(tmp_path / "full", 20, fp16=True)
    train(tmp_path / "cut", 10, fp16=True)
    resumed, trainer = train(tmp_path / "cut", 20, resume=True, seed=7, fp16=True)
    assert trainer.state.global_step == 20
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.allclose(a, b, atol=1e-5), name


@pytest.fixture(scope="module")
def gpu_pair(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=101, hidden_size=64, intermediate_size=96,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=128,
                                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    ref = transformers.LlamaForCausalLM(config).eval()
    path = tmp_path_factory.mktemp("llama")
    ref.save_pretrained(path)
    return wxb.from_pretrained(path).eval().cuda(), ref.cuda()


def test_logits_equal_transformers_on_the_gpu(gpu_pair):
    ours, ref = gpu_pair
    torch.manual_seed(1)
    ids = torch.randint(3, 101, (3, 19), device="cuda")
    mask = torch.ones_like(ids)
    mask[0, :6] = 0
    with torch.no_grad():
        a = ours(ids, attention_mask=mask).logits
        b = ref(ids, attention_mask=mask).logits
    real = mask.bool()
    assert (a[real] - b[real]).abs().max() <= 1e-4


@pytest.mark.parametrize("settings", [
    dict(),
    dict(num_beams=3, length_penalty=0.8),
    dict(do_sample=True, top_k=20, top_p=0.9, temperature=0.8),
], ids=["greedy", "beam", "sampling"])
def test_generate_is_token_identical_on_the_gpu(gpu_pair, settings):
    ours, ref = gpu_pair
    torch.manual_seed(2)
    ids = torch.randint(3, 101, (2, 7), device="cuda")
    mask = torch.ones_like(ids)
    ids[1, :3], mask[1, :3] = 0, 0  # left padding
    common = dict(max_new_tokens=20, attention_mask=mask, pad_token_id=0, **settings)
    torch.manual_seed(3)
    expected = ref.generate(ids, **common)
    torch.manual_seed(3)
    got = generate(ours, ids, **common)
    assert got.device.type == "cuda"
    assert torch.equal(got, expected)


def test_half_precision_checkpoint_generates_on_the_gpu(tmp_path):
    model = small_gpt2()
    model.save_pretrained(tmp_path)
    half = wxb.from_pretrained(tmp_path, dtype=torch.bfloat16).cuda().eval()
    assert next(half.parameters()).dtype == torch.bfloat16
    prompt = torch.tensor([[3, 17, 5]], device="cuda")
    out = generate(half, prompt, max_new_tokens=10)
    assert out.shape == (1, 13)
    full = small_gpt2().cuda().eval()
    with torch.no_grad():
        a, b = half(prompt).logits.float(), full(prompt).logits
    assert (a - b).abs().max() < 0.05
