"""``wxb.pipeline(task, model_folder)``: a ready-to-call object for one use of a model."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from wxb.errors import ConfigError

# task -> (module, class); loaded on use.
TASKS = {"embed": ("wxb.tasks.embed", "SentenceEmbedder"),
         "classify": ("wxb.tasks.classify", "TextClassifier"),
         "tag": ("wxb.tasks.tag", "Tagger"),
         "translate": ("wxb.tasks.translate", "Translator")}


def pipeline(task: str, model: str | Path, **kwargs: Any) -> Any:
    """``wxb.pipeline("embed", "path/to/all-MiniLM-L6-v2")(["a text", ...])``,
    ``wxb.pipeline("classify", "runs/sst2-minilm/model")("a fine film")``,
    ``wxb.pipeline("tag", "runs/conll-bilstm/model")("EU rejects German call")`` or
    ``wxb.pipeline("translate", "runs/zh-en-seq2seq/model")("我很好。")``."""
    if task not in TASKS:
        raise ConfigError(f"unknown pipeline task {task!r}; choose one of: {', '.join(TASKS)}")
    module, name = TASKS[task]
    return getattr(importlib.import_module(module), name)(model, **kwargs)
