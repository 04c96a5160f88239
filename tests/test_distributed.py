"""The Trainer under torchrun: two CPU processes (Gloo) train like one with twice the batch.

The script below runs both ways: as one process with batches of 8, and under
``torchrun --nproc_per_node 2`` with batches of 4 per process (the same global batches of 8,
sharded). DDP averages the two halves' gradients, which is the gradient of the whole batch;
40 examples make every batch full, so the halves are equal and the average is exact.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from wxb.errors import ConfigError
from wxb.train.distributed import Distributed

SCRIPT = textwrap.dedent('''
    import sys
    import torch
    from torch import nn
    from wxb.train import Trainer, TrainingArguments

    class Out:
        def __init__(self, loss, logits):
            self.loss, self.logits = loss, logits

    class Regressor(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

        def forward(self, x, y=None):
            pred = self.net(x).squeeze(-1)
            return Out(None if y is None else ((pred - y) ** 2).mean(), pred)

    class Examples(torch.utils.data.Dataset):
        def __init__(self, n, seed=0):
            g = torch.Generator().manual_seed(seed)
            self.x = torch.randn(n, 4, generator=g)
            self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"x": self.x[i], "y": self.y[i]}

    out, batch = sys.argv[1], int(sys.argv[2])
    torch.manual_seed(0)
    args = TrainingArguments(output_dir=out, max_steps=12, per_device_train_batch_size=batch,
                             learning_rate=1e-2, logging_steps=1, eval_strategy="steps",
                             eval_steps=4, disable_tqdm=True, plot_loss=False,
                             lr_scheduler_type="linear", use_cpu=True)
    Trainer(Regressor(), args, train_dataset=Examples(40),
            eval_dataset=Examples(16, seed=1)).train()
''')


def run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


def losses(run_dir) -> list[dict]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_processes_train_like_one_with_the_whole_batch(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    run([sys.executable, str(script), str(tmp_path / "single"), "8"])
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(tmp_path / "ddp"), "4"])

    single = load_file(tmp_path / "single" / "checkpoint-12" / "model.safetensors")
    ddp = load_file(tmp_path / "ddp" / "checkpoint-12" / "model.safetensors")
    for name, value in single.items():
        assert torch.allclose(ddp[name], value, atol=1e-6), name
    # Only rank 0 writes the log: one line per step and evaluation, not two.
    single_log, ddp_log = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert [e["step"] for e in ddp_log] == [e["step"] for e in single_log]
    for a, b in zip(single_log, ddp_log, strict=True):
        for key in ("loss", "eval_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5)
    pointer = json.loads((tmp_path / "ddp" / "checkpoints.json").read_text())
    assert pointer["last"] == "checkpoint-12"


def test_the_layout_comes_from_torchruns_environment(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    alone = Distributed.from_env()
    assert (alone.enabled, alone.is_main, alone.shard([5, 6, 7])) == (False, True, [5, 6, 7])
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    second = Distributed.from_env()
    assert (second.enabled, second.is_main) == (True, False)
    assert second.shard([0, 1, 2, 3, 4, 5, 6]) == [1, 4]
    assert second.device(use_cpu=True) == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE must be integers"):
        Distributed.from_env()
