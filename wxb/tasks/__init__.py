"""Pipelines: a model and its tokenizer, put to one use (complete text, chat, ...)."""

from wxb.tasks.complete import Chat, complete, load_causal_lm, stream_completion

__all__ = ["Chat", "complete", "load_causal_lm", "stream_completion"]
