"""Recipes: listing, loading, run_recipe for both tasks on tiny settings, and the poem metric."""

import json

import numpy as np
import pytest

from wxb.errors import ConfigError, DataError
from wxb.recipes import load_recipe, recipe_names, run_recipe
from wxb.tasks.causal_lm.samples import is_regular_poem, regular_poem_share
from wxb.tasks.causal_lm.train import pretrain

TINY_GPT = {"type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 32}
TINY_LLAMA = {"type": "llama", "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 2, "hidden_size": 32, "intermediate_size": 64}
# No torch.compile: its one-off compilation would dominate a six-step run.
TINY_TRAINING = {"max_steps": 6, "eval_steps": 3, "logging_steps": 3, "torch_compile": False,
                 "per_device_train_batch_size": 8, "per_device_eval_batch_size": 32}
POEMS = ["春曉：春眠不覺曉，處處聞啼鳥。夜來風雨聲，花落知多少。",
         "登鸛雀樓：白日依山盡，黃河入海流。欲窮千里目，更上一層樓。",
         "涼州詞：葡萄美酒夜光杯，欲飲琵琶馬上催。醉臥沙場君莫笑，古來征戰幾人回。"]


@pytest.fixture(autouse=True)
def quiet_progress_in_tmp(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    monkeypatch.chdir(tmp_path)  # run_recipe's default output dir is ./runs/<name>


@pytest.fixture
def data_dir(tmp_path):
    """A stand-in for ../shared/data with the two corpora the causal-lm recipes read."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    (root / "tinyshakespeare").mkdir(parents=True)
    speech = ["ROMEO:\nBut soft, what light through yonder window breaks?\n",
              "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n"]
    (root / "tinyshakespeare" / "input.txt").write_text(
        "\n".join(speech[i] for i in rng.integers(0, 2, 60)), encoding="utf-8")
    (root / "tang_poetry").mkdir()
    (root / "tang_poetry" / "tang_poems.txt").write_text(
        "\n".join(POEMS[i] for i in rng.integers(0, 3, 100)) + "\n", encoding="utf-8")
    return root


# ----------------------------------------------------------------------------- listing, loading


def test_recipes_are_listed():
    assert {"digits-cnn", "digits-mlp", "shakespeare-char", "tang-poems"} <= set(recipe_names())


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown recipe 'nope'.*shakespeare-char"):
        load_recipe("nope")
    with pytest.raises(ConfigError, match="unknown recipe"):
        run_recipe("nope")


@pytest.mark.parametrize("name", ["shakespeare-char", "tang-poems"])
def test_causal_lm_recipes_name_data_model_training_and_their_promise(name):
    recipe = load_recipe(name)
    assert recipe["task"] == "causal-lm"
    assert {"data", "tokenizer", "model", "training", "expected"} <= set(recipe)
    assert recipe["max_time_seconds"] <= 600
    # A recipe reports only what a run measured; one not yet run reports nothing.
    assert recipe.get("reported") is None or recipe["reported"]["eval_loss"] > 0


# ----------------------------------------------------------------------------- running them


def test_run_shakespeare_char_with_tiny_settings(data_dir, tmp_path):
    overrides = {"model": TINY_LLAMA, "training": TINY_TRAINING,
                 "samples": {"max_new_tokens": 16}}
    result = run_recipe("shakespeare-char", data_dir, overrides=overrides)
    run = tmp_path / "runs" / "shakespeare-char"
    assert json.loads((run / "result.json").read_text()) == result
    assert result["recipe"] == "shakespeare-char"
    assert result["steps"] == 6
    assert result["expected"]["metric"] == "eval_loss"
    assert result["expected"]["value"] == result["metrics"]["eval_loss"]
    assert result["expected"]["met"] == (result["metrics"]["eval_loss"] <= 1.5)
    assert result["reported"] == load_recipe("shakespeare-char")["reported"]
    assert (run / "model" / "config.json").is_file()


def test_a_model_of_another_type_replaces_the_recipes_model(data_dir, tmp_path):
    assert load_recipe("shakespeare-char")["model"]["type"] == "llama"
    result = run_recipe("shakespeare-char", data_dir, tmp_path / "gpt2",
                        {"model": TINY_GPT, "training": TINY_TRAINING,
                         "samples": {"max_new_tokens": 16}})
    assert result["config"]["model"]["type"] == "gpt2"
    assert result["config"]["model"]["n_embd"] == 32
    assert "hidden_size" not in result["config"]["model"]
    assert (tmp_path / "gpt2" / "model" / "model.safetensors").is_file()


def test_run_tang_poems_reports_the_regular_poem_share(data_dir, tmp_path):
    overrides = {"data": {"block_size": 64}, "model": TINY_GPT, "training": TINY_TRAINING,
                 "samples": {"max_new_tokens": 40, "prompts": ["春曉："]}}
    result = run_recipe("tang-poems", data_dir, tmp_path / "tang", overrides)
    share = result["metrics"]["regular_poem_share"]
    poems = [s["continuation"] for s in result["samples"]]
    assert len(poems) == 1 + 8  # greedy, and eight top-p samples
    assert "\n" not in "".join(poems)  # cut at the stop token
    assert share == regular_poem_share(poems)
    assert result["expected"]["metric"] == "regular_poem_share"


def test_run_recipe_dispatches_classify_recipes(tmp_path):
    result = run_recipe("digits-mlp", output_dir=tmp_path / "mlp",
                        overrides={"training": {"max_steps": 3}})
    assert result["steps"] == 3
    assert "eval_accuracy" in result["metrics"]
    assert set(result["expected"]) == {"metric", "at_least", "value", "met"}


def test_missing_data_says_which_folder_to_give(tmp_path):
    with pytest.raises(DataError, match=r"tinyshakespeare/input.txt.*--data-dir"):
        run_recipe("shakespeare-char", tmp_path / "empty")


def test_bad_recipe_settings_are_refused(data_dir):
    with pytest.raises(ConfigError, match="unknown task 'translate'"):
        run_recipe("shakespeare-char", data_dir, overrides={"task": "translate"})
    with pytest.raises(ConfigError, match="unknown sample metric 'bleu'"):
        run_recipe("tang-poems", data_dir, overrides={"sample_metrics": ["bleu"]})
    with pytest.raises(ConfigError, match="at_least, at_most"):
        run_recipe("shakespeare-char", data_dir,
                   overrides={"expected": {"metric": "eval_loss", "below": 1}})
    with pytest.raises(ConfigError, match=r"expected\.metric 'accuracy'"):
        pretrain({"data": {"path": str(data_dir / "tinyshakespeare" / "input.txt")},
                  "expected": {"metric": "accuracy", "at_least": 0.9}})


# ----------------------------------------------------------------------------- the poem metric


@pytest.mark.parametrize("body, regular", [
    ("春眠不覺曉，處處聞啼鳥。夜來風雨聲，花落知多少。", True),  # four lines of five
    ("葡萄美酒夜光杯，欲飲琵琶馬上催。", True),  # two lines of seven
    ("白日依山盡，黃河入海流。欲窮千里目", True),  # the last line needs no stop
    ("春眠不覺曉，葡萄美酒夜光杯。", False),  # five and seven mixed
    ("春眠不覺曉，處處聞啼", False),  # cut off mid-line
    ("春眠不覺曉。", False),  # one line is not a poem
    ("", False),
    ("床前明月光，疑是地上霜？舉頭望明月！低頭思故鄉；", True),  # every line end counts
])
def test_is_regular_poem(body, regular):
    assert is_regular_poem(body) is regular


def test_regular_poem_share_reads_bodies_after_the_title():
    assert regular_poem_share(POEMS) == 1.0
    assert regular_poem_share([*POEMS, "題：春眠不覺曉，處處聞"]) == 0.75
    assert regular_poem_share([]) == 0.0


def test_fine_tuning_recipes_name_their_data_and_take_another_model(tmp_path, capsys,
                                                                    monkeypatch):
    """clue-afqmc with a stand-in for its data and a tiny checkpoint given by --model."""
    import json as _json

    from wxb.cli import main
    from wxb.models.bert import BertConfig, BertForSequenceClassification
    from wxb.tokenizers.train import train_on_lines

    monkeypatch.setenv("CI", "true")
    monkeypatch.chdir(tmp_path)
    pairs = [("花呗怎么还款", "花呗如何还钱", "1"), ("借呗利息多少", "花呗能提额吗", "0")] * 20
    (tmp_path / "clue_zh" / "afqmc").mkdir(parents=True)
    (tmp_path / "clue_zh" / "afqmc" / "dev.json").write_text("\n".join(
        _json.dumps({"sentence1": a, "sentence2": b, "label": y}, ensure_ascii=False)
        for a, b, y in pairs) + "\n", encoding="utf-8")
    tokenizer = train_on_lines("wordpiece", [a + b for a, b, _ in pairs], vocab_size=80,
                               min_frequency=1)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64))
    tokenizer.save(model.save_pretrained(tmp_path / "tiny"))
    for recipe in ("clue-afqmc", "clue-tnews", "sst2-minilm", "pretraining-helps"):
        assert load_recipe(recipe)["task"] in ("text-classify", "pretrain-finetune")
    with pytest.raises(SystemExit) as exit_info:
        main(["recipe", "run", "clue-afqmc", "--data-dir", str(tmp_path), "--model",
              str(tmp_path / "tiny"), "--max-steps", "2"])
    assert exit_info.value.code in (0, None)
    result = _json.loads((tmp_path / "runs" / "clue-afqmc" / "result.json").read_text())
    assert result["examples"] == {"train": 28, "validation": 4, "test": 8}
    assert result["labels"] == ["different", "same"] and result["steps"] == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["recipe", "run", "clue-afqmc", "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert ("fine-tunes runs/pretraining-helps/pretrain/model, which does not exist yet: run "
            "`wxb recipe run pretraining-helps` first") in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a folder under runs/ that no recipe makes
        main(["recipe", "run", "clue-afqmc", "--data-dir", str(tmp_path), "--model",
              "runs/whisper-tiny.en"])
    assert exit_info.value.code == 2
    assert ("fine-tunes runs/whisper-tiny.en, which does not exist yet: make it first (no "
            "recipe makes it), or give another checkpoint with --model") in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["recipe", "run", "pretraining-helps", "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "ChnSentiCorp_htl_all.csv does not exist" in capsys.readouterr().err


def test_a_recipe_that_extends_another_keeps_its_own_name_and_promise():
    lstm, gru, rnn = (load_recipe(n) for n in ("sst2-lstm", "sst2-gru", "sst2-rnn"))
    assert gru["model"] == {**lstm["model"], "cell": "gru"}
    assert rnn["model"]["cell"] == "rnn" and "expected" not in rnn
    assert gru["data"] == lstm["data"] and gru["training"] == lstm["training"]
    assert gru["name"] == "sst2-gru" and gru["description"] != lstm["description"]
    assert "extends" not in gru and gru.get("reported") != lstm.get("reported")


def test_vectors_an_earlier_recipe_writes_are_named_with_that_recipe(tmp_path, monkeypatch):
    from wxb.errors import ConfigError
    from wxb.recipes import run_recipe

    (tmp_path / "conll2003").mkdir()
    for name in ("train", "valid", "test"):
        (tmp_path / "conll2003" / f"{name}.txt").write_text("EU B-ORG\nrejects O\n\n")
    monkeypatch.chdir(tmp_path)  # no runs/ here
    with pytest.raises(ConfigError, match=r"recipe conll-vectors \(variant word2vec\) reads "
                       r"model.vectors runs/word2vec-conll/vectors.txt, which does not exist "
                       r"yet: run `wxb recipe run word2vec-conll` first"):
        run_recipe("conll-vectors", data_dir=tmp_path)
