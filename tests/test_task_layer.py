"""The task layer: one registry of task names, one skeleton for a run (typed sections, one time
budget, one goal, result.json written once), and a task added through the registry alone
running end to end from `wxb train`."""

import dataclasses
import importlib
import json
import typing

import pytest
import torch

from wxb.cli import main
from wxb.config import merge_config
from wxb.errors import ConfigError
from wxb.recipes import DEFAULT_TASK, load_recipe, recipe_names
from wxb.tasks import (
    TASKS,
    Task,
    get_task,
    pipeline,
    register,
    run_task,
    task_names,
    unregister,
)
from wxb.tasks.run import COMMON_FIELDS, Run
from wxb.tasks.sections import Section


@pytest.fixture(autouse=True)
def quiet_progress_in_tmp(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    monkeypatch.chdir(tmp_path)


# ----------------------------------------------------------------------------- a task of our own


@dataclasses.dataclass
class LineData(Section):
    """Points on y = slope * x + noise."""

    examples: int = 64
    slope: float = 3.0
    noise: float = 0.01


class Line(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, labels=None):
        out = x * self.weight
        loss = None if labels is None else torch.nn.functional.mse_loss(out, labels)
        return type("Out", (), {"loss": loss, "logits": out})()


def train_line(config, *, resume=False, log=None):
    """A complete task on the skeleton: sections, goal, training, result.json."""
    run = Run("fit-a-line", config, {"data": LineData}, log=log)
    run.expect(("eval_loss", "slope"))
    data = run["data"]
    args = run.arguments({"output_dir": "runs/line", "max_steps": 40, "learning_rate": 0.1,
                          "optim": "sgd", "lr_scheduler_type": "constant", "max_grad_norm": 0,
                          "per_device_train_batch_size": 16, "eval_strategy": "no",
                          "disable_tqdm": True, "plot_loss": False})
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(data.examples, generator=generator)
    y = data.slope * x + data.noise * torch.randn(data.examples, generator=generator)
    rows = [{"x": a, "labels": b} for a, b in zip(x, y, strict=True)]
    model = Line()
    trainer = run.trainer(model, args, train_dataset=rows, eval_dataset=rows)
    output = trainer.train(resume_from_checkpoint=resume)
    metrics = {**trainer.evaluate(), "slope": model.weight.item()}
    return run.finish(metrics, trainer=trainer, output=output, points=data.examples)


@pytest.fixture
def line_task():
    task = register(Task("fit-a-line", "least squares on a line", train=train_line,
                         aliases=("line",)))
    yield task
    unregister(task.name)


def test_a_task_added_through_the_registry_alone_runs_end_to_end(line_task, tmp_path, capsys):
    (tmp_path / "line.yaml").write_text(
        "task: line\n"  # by its alias
        "data: {slope: 2.5}\n"
        "expected: {metric: slope, at_least: 2.4}\n")
    with pytest.raises(SystemExit) as done:
        main(["train", str(tmp_path / "line.yaml"), "--max-steps", "30",
              "--output-dir", str(tmp_path / "run")])
    assert done.value.code in (0, None)
    assert "slope" in capsys.readouterr().out
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert list(result)[:len(COMMON_FIELDS)] == list(COMMON_FIELDS)
    assert result["task"] == "fit-a-line" and result["steps"] == 30
    assert result["metric"] == "slope" and result["met"] is True
    assert result["value"] == pytest.approx(2.5, abs=0.05)
    assert result["expected"] == {"metric": "slope", "at_least": 2.4,
                                  "value": result["value"], "met": True}
    assert result["num_parameters"] == result["trainable_parameters"] == 1
    assert result["points"] == 64
    assert result["precision"] in ("fp32", "bf16")
    assert result["machine"]["threads"] == torch.get_num_threads()
    # The resolved config reruns the experiment: defaults filled in, flags applied.
    assert result["config"]["data"] == {"examples": 64, "slope": 2.5, "noise": 0.01}
    assert result["config"]["training"]["max_steps"] == 30
    assert result["config"]["task"] == "line"
    assert run_task("fit-a-line", result["config"])["value"] == result["value"]


def test_the_time_budget_and_the_goal_are_the_runs_own(line_task, tmp_path):
    result = run_task("fit-a-line", {"max_time_seconds": 0,
                                     "expected": {"metric": "eval_loss", "at_most": 1e-9},
                                     "training": {"output_dir": str(tmp_path / "run")}})
    assert result["stopped_by_time_budget"] and result["steps"] == 1
    assert result["met"] is False and result["expected"]["metric"] == "eval_loss"
    with pytest.raises(ConfigError, match=r"expected\.metric 'accuracy' is not reported"):
        run_task("fit-a-line", {"expected": {"metric": "accuracy", "at_least": 1}})


def test_names_aliases_and_the_older_names(line_task):
    assert get_task("line") is line_task
    assert get_task("text-classification").name == "text-classify"
    # "classify" meant the image classifier in configs and the text classifier in pipelines.
    assert get_task("classify").name == "image-classify"
    assert get_task("classify", use="pipeline").name == "text-classify"
    assert get_task("translate", use="pipeline").name == "translation"
    with pytest.raises(ConfigError, match=r"unknown task 'nope'; choose one of: image-classify"):
        get_task("nope")
    with pytest.raises(ConfigError, match="is taken"):
        register(Task("line", "a clash"))
    with pytest.raises(ConfigError, match="has no pipeline"):
        pipeline("fit-a-line", "anywhere")
    assert "embed" in task_names(serves=True) and "embed" not in task_names(trains=True)


def test_every_task_that_trains_and_serves_points_at_real_code():
    for task in TASKS.values():
        if task.train is not None:
            assert callable(task.train_function()), task.name
        if task.pipeline is not None:
            assert isinstance(task.pipeline_class(), type), task.name


def test_inference_never_imports_training_code():
    import subprocess
    import sys

    pipelines = [t.pipeline for t in TASKS.values() if isinstance(t.pipeline, str)]
    code = ("import importlib, sys\n"
            f"for target in {pipelines!r}:\n"
            "    importlib.import_module(target.partition(':')[0])\n"
            "bad = sorted(m for m in sys.modules if m.startswith('wxb.train')"
            " or m.endswith('.train') and m.startswith('wxb.tasks'))\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- every section


def section_classes(*, typed: bool = False):
    """(task, section name, Section class) for every section of every task that trains; with
    ``typed``, those that have a field taking a number or true/false."""
    found = []
    for task in TASKS.values():
        if not isinstance(task.train, str):
            continue
        module = importlib.import_module(task.train.partition(":")[0])
        sections = module.SECTIONS.get(task.name, module.SECTIONS)  # one module, two tasks
        for name, cls in sections.items():
            if not typed or typed_field(cls) is not None:
                found.append(pytest.param(task.name, name, cls, id=f"{task.name}.{name}"))
    return found


def typed_field(cls):
    """A field of ``cls`` that takes a number or true/false, and a value of the wrong type."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kinds = typing.get_args(hints[field.name]) or (hints[field.name],)
        if bool in kinds:
            return field.name, "perhaps"
        if int in kinds or float in kinds:
            return field.name, "lots"
    return None


def test_every_section_of_every_task_is_a_typed_section():
    params = section_classes()
    having = {p.values[0] for p in params}
    # A comparison, and pretraining-then-fine-tuning, hold the configs of other tasks.
    assert having == set(task_names(trains=True)) - {"compare-finetune", "pretrain-finetune"}
    assert all(issubclass(p.values[2], Section) for p in params)


# Model sections that are built from scratch need a family; its config refuses the key then.
FAMILIES = {"token-classify": "rnn", "translation": "seq2seq", "summarization": "t5"}


@pytest.mark.parametrize("task, name, cls", section_classes())
def test_a_wrong_key_in_any_section_gives_one_line(task, name, cls):
    values = {"colour": "blue"}
    if cls.extra_fields and task in FAMILIES:
        values["type"] = FAMILIES[task]
    with pytest.raises(ConfigError) as error:
        cls.from_dict(values, name)
    message = str(error.value)
    assert "\n" not in message
    assert "'colour'" in message and "known ones are: " in message


@pytest.mark.parametrize("task, name, cls", section_classes(typed=True))
def test_a_wrong_type_in_any_section_gives_one_line(task, name, cls):
    key, value = typed_field(cls)
    with pytest.raises(ConfigError) as error:
        cls.from_dict({key: value}, name)
    message = str(error.value)
    assert "\n" not in message
    assert f"{name}.{key}" in message and repr(value) in message
    assert "number" in message or "true or false" in message


def test_a_wrong_section_or_key_stops_a_run_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config section 'trainer'; a image-classify"):
        run_task("image-classify", {"trainer": {}})
    with pytest.raises(ConfigError, match=r"unknown data field 'colour'; known ones are: name"):
        run_task("image-classify", {"data": {"colour": 1}})
    with pytest.raises(ConfigError, match=r"unknown mlp config field 'colour'"):
        run_task("image-classify", {"model": {"type": "mlp", "colour": 1}})
    with pytest.raises(ConfigError, match=r"data\.test_size must be a number"):
        run_task("image-classify", {"data": {"test_size": "half"}})
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- the recipes


def configs_of(recipe):
    """(task, config) for each run a recipe makes: one, a comparison's variants, or the two
    stages of pretraining then fine-tuning (whose model is the first stage's)."""
    task = get_task(recipe.get("task", DEFAULT_TASK))
    if task.name == "compare-finetune":
        base = {k: v for k, v in recipe.items()
                if k not in ("variants", "metric", "pipeline", "expected", "reported", "task")}
        compared = get_task(recipe.get("pipeline", "text-classify"))
        return [(compared, merge_config(base, v or {})) for v in recipe["variants"].values()]
    if task.name == "pretrain-finetune":
        return [(get_task("bert-pretrain"), recipe["pretrain"]),
                (get_task("text-classify"),
                 {**recipe["finetune"], "model": {"pretrained": "the first stage's"}})]
    return [(task, recipe)]


@pytest.mark.parametrize("name", recipe_names())
def test_every_bundled_recipe_is_a_valid_config_of_its_task(name):
    for task, config in configs_of(load_recipe(name)):
        module = importlib.import_module(task.train.partition(":")[0])
        sections = module.SECTIONS.get(task.name, module.SECTIONS)
        run = Run(task.name, config, sections,
                  extra_keys=("sample_metrics", *getattr(module, "EXTRA_KEYS", ())))
        assert set(run.sections) == set(sections)
        assert run.arguments().output_dir
