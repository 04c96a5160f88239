"""wxb: from Wx+b to LLaMA — every model of modern deep learning for language, from scratch."""

__version__ = "0.1.0"

from wxb.errors import CheckpointError, ConfigError, DataError, TrainingError, WxbError

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "Trainer",
    "TrainingArguments",
    "TrainingError",
    "WxbError",
    "__version__",
    "from_pretrained",
    "generate",
    "load_tokenizer",
    "pipeline",
]


def __getattr__(name: str):
    # Heavy entry points load on first use so `import wxb` and `wxb --help` stay fast.
    if name in ("Trainer", "TrainingArguments"):
        import wxb.train

        return getattr(wxb.train, name)
    if name == "generate":
        from wxb.generation import generate

        return generate
    if name == "load_tokenizer":
        from wxb.tokenizers import load_tokenizer

        return load_tokenizer
    if name == "pipeline":
        from wxb.tasks import pipeline

        return pipeline
    if name == "from_pretrained":
        from wxb.hub import from_pretrained

        return from_pretrained
    raise AttributeError(f"module 'wxb' has no attribute {name!r}")
