"""bf16: auto turns bf16 autocast on only where the device multiplies bf16 natively; an explicit
bf16: true elsewhere warns and is obeyed; what the user asked is what the arguments keep."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from wxb.errors import ConfigError
from wxb.train import Trainer, TrainingArguments, find_checkpoint, native_bf16
from wxb.train import precision as precision_module

NO_BF16 = {"fpu", "sse2", "avx", "avx2", "fma"}  # a 2-core AMD EPYC of the AVX2 generation
WITH_BF16 = NO_BF16 | {"avx512f", "avx512_bf16", "amx_bf16"}


class Probe(nn.Module):
    """Records the dtype its matmul ran in, so a test sees whether autocast was on."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.dtypes: list[torch.dtype] = []

    def forward(self, x: torch.Tensor):
        out = self.linear(x)
        self.dtypes.append(out.dtype)
        return type("Out", (), {"loss": out.float().pow(2).mean()})()


def make_trainer(tmp_path, **kw) -> Trainer:
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, disable_tqdm=True,
                             plot_loss=False, use_cpu=True, per_device_train_batch_size=2, **kw)
    return Trainer(Probe(), args, train_dataset=[{"x": torch.randn(4)} for _ in range(2)])


def flags(monkeypatch, cpu: set[str]) -> None:
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: cpu)


def test_auto_is_off_on_a_cpu_without_native_bf16(tmp_path, monkeypatch, caplog):
    flags(monkeypatch, NO_BF16)
    with caplog.at_level(logging.INFO, logger="wxb.train"), warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns
        trainer = make_trainer(tmp_path, bf16="auto")
    assert (trainer.bf16, trainer.precision) == (False, "fp32")
    lines = [r.getMessage() for r in caplog.records if r.name == "wxb.train"]
    assert lines == ["bf16: auto -> off (this CPU has no avx512_bf16/amx_bf16; bf16 matmuls "
                     "would be emulated, slower than fp32)"]
    assert trainer.precision_reason == lines[0]
    trainer.train()
    assert trainer.model.dtypes == [torch.float32]
    # The arguments and the checkpoint keep what the user asked for, not what it became.
    assert trainer.args.to_dict()["bf16"] == "auto"
    saved = json.loads((find_checkpoint(tmp_path) / "training_args.json").read_text())
    assert saved["bf16"] == "auto"


def test_auto_is_on_on_a_cpu_with_native_bf16(tmp_path, monkeypatch, caplog):
    flags(monkeypatch, WITH_BF16)
    with caplog.at_level(logging.INFO, logger="wxb.train"):
        trainer = make_trainer(tmp_path, bf16="auto")
    assert (trainer.bf16, trainer.precision) == (True, "bf16")
    assert [r.getMessage() for r in caplog.records if r.name == "wxb.train"] == [
        "bf16: auto -> on (this CPU has amx_bf16/avx512_bf16)"]
    trainer.train()
    assert trainer.model.dtypes == [torch.bfloat16]


def test_explicit_true_warns_without_native_bf16_and_is_obeyed(tmp_path, monkeypatch):
    flags(monkeypatch, NO_BF16)
    with pytest.warns(UserWarning, match=r"bf16: true on cpu without native bf16 .*"
                                         r"set bf16: auto or false") as caught:
        trainer = make_trainer(tmp_path, bf16=True)
    assert len(caught) == 1
    assert (trainer.bf16, trainer.precision) == (True, "bf16")
    trainer.train()
    assert trainer.model.dtypes == [torch.bfloat16]
    flags(monkeypatch, WITH_BF16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # native: no warning
        assert make_trainer(tmp_path / "native", bf16=True).bf16


def test_false_and_fp32_never_look_at_the_cpu(tmp_path, monkeypatch):
    flags(monkeypatch, WITH_BF16)
    trainer = make_trainer(tmp_path, bf16=False)
    assert (trainer.bf16, trainer.precision, trainer.precision_reason) == (False, "fp32",
                                                                           "bf16: off")


def test_native_bf16_follows_the_flags_and_unknown_flags_mean_emulated(monkeypatch):
    flags(monkeypatch, WITH_BF16)
    assert native_bf16("cpu") is True
    flags(monkeypatch, NO_BF16)
    assert native_bf16("cpu") is False
    flags(monkeypatch, set())  # not Linux: /proc/cpuinfo unreadable
    assert native_bf16(torch.device("cpu")) is False
    flags(monkeypatch, {"fp", "asimd", "bf16"})  # an aarch64 "Features" line with FEAT_BF16
    assert native_bf16("cpu") is True


def test_auto_on_this_machine_follows_its_cpu_flags(tmp_path):
    cpuinfo = Path("/proc/cpuinfo")
    words: set[str] = set()
    if cpuinfo.is_file():
        line = next((line for line in cpuinfo.read_text().splitlines()
                     if line.split(":")[0].strip() in ("flags", "Features")), "")
        words = set(line.partition(":")[2].split())
    expected = bool(words & {"avx512_bf16", "amx_bf16", "bf16"})
    assert precision_module.cpu_flags() == words
    assert make_trainer(tmp_path, bf16="auto").bf16 is expected


@pytest.mark.parametrize("given, kept", [("auto", "auto"), ("AUTO", "auto"), (" Auto ", "auto"),
                                         ("true", True), ("yes", True), (True, True),
                                         ("false", False), ("0", False), (False, False)])
def test_bf16_values_round_trip_through_the_arguments(given, kept):
    args = TrainingArguments.from_dict({"bf16": given})
    assert args.bf16 == kept and type(args.bf16) is type(kept)
    again = TrainingArguments.from_dict(json.loads(json.dumps(args.to_dict())))
    assert again.bf16 == kept and again.to_dict() == args.to_dict()


def test_a_wrong_bf16_value_is_one_line_naming_the_choices():
    with pytest.raises(ConfigError) as err:
        TrainingArguments.from_dict({"bf16": "maybe"})
    assert str(err.value) == "bf16 must be true, false or auto, got 'maybe'"
    with pytest.raises(ConfigError, match="bf16 must be true, false or auto, got 2"):
        TrainingArguments(bf16=2)


def test_fp16_excludes_an_explicit_bf16_but_not_auto():
    with pytest.raises(ConfigError, match="choose one of fp16 and bf16"):
        TrainingArguments(fp16=True, bf16=True)
    assert TrainingArguments(fp16=True, bf16="auto").bf16 == "auto"
    chosen = precision_module.resolve_precision("auto", True, "cuda")
    assert (chosen.name, chosen.bf16, chosen.fp16) == ("fp16", False, True)
