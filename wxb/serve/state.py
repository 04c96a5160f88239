"""What the server serves: its settings, and the model, tokenizer, engine, embedder and
retriever that a start-up task loads (``Served.load`` on the engine's thread, then
``Served.start``)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from wxb.errors import ConfigError
from wxb.serve.engine import Engine


@dataclasses.dataclass
class ServeSettings:
    """How ``wxb serve`` runs.

    ``model``: a causal LM folder (or hub id) served on the chat and completion routes, or a
    Whisper folder served on /v1/audio/transcriptions and /translations; ``embedding_model``:
    an encoder folder served on /v1/embeddings. ``api_key`` guards every route but /health
    and the playground; ``cors_origins`` lists the origins a browser may call from (none:
    CORS stays off). The limits bound one request: its body, its number of choices ``max_n``,
    its stop strings (``max_stop`` of at most ``max_stop_length`` characters); an audio
    upload may be ``max_audio_bytes`` (OpenAI's limit: 25 MB). ``served_model_name`` is the
    id clients name (default: the folder's name).
    ``adapter``: a LoRA adapter folder (wxb or PEFT) applied to the model as it is served.
    ``rag``: a ``wxb rag`` index folder; every chat request then gets the ``rag_k`` passages
    that ``rag_method`` retrieves for its last user turn in a system message (searched with
    the embedder the index was built with).
    """

    model: str | None
    embedding_model: str | None = None
    api_key: str | None = None
    cors_origins: list[str] = dataclasses.field(default_factory=list)
    max_concurrency: int = 16
    max_queue: int = 64
    max_body_bytes: int = 1 << 20
    max_audio_bytes: int = 25 << 20
    max_n: int = 8
    max_stop: int = 4
    max_stop_length: int = 64
    served_model_name: str | None = None
    adapter: str | None = None
    rag: str | None = None
    rag_k: int = 5
    rag_method: str = "hybrid"

    def check(self) -> None:
        if self.model is None and self.embedding_model is None:
            raise ConfigError("nothing to serve: give a model (a causal LM folder) or an "
                              "embedding model")
        for name in ("max_concurrency", "max_queue", "max_body_bytes", "max_audio_bytes",
                     "max_n", "max_stop", "max_stop_length", "rag_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.adapter is not None and self.model is None:
            raise ConfigError("an adapter applies to a model: give the model it was trained on")
        if self.transcribes:
            for name, value in (("adapter", self.adapter), ("rag", self.rag)):
                if value is not None:
                    raise ConfigError(f"{name} applies to a causal LM, and {self.model} is a "
                                      "Whisper model (served for transcription); leave it out")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key is empty; give a key or leave it out")
        if self.rag is not None:
            from wxb.rag.retrieve import METHODS

            if self.model is None:
                raise ConfigError("rag adds passages to chat requests: give the model that "
                                  "answers them")
            if self.rag_method not in METHODS:
                raise ConfigError(f"rag_method {self.rag_method!r} is not a retrieval method; "
                                  f"choose from {', '.join(METHODS)}")

    @property
    def transcribes(self) -> bool:
        """Whether ``model`` is a Whisper folder (speech in, text out)."""
        from wxb.tasks.speech_recognition.pipeline import holds_whisper

        return self.model is not None and holds_whisper(self.model)


def check_model(model: str) -> None:
    """Refuse, before loading anything, a model folder that is neither a causal LM nor a
    Whisper model."""
    from wxb.tasks.causal_lm.pipeline import check_causal_lm
    from wxb.tasks.speech_recognition.pipeline import holds_whisper

    if not holds_whisper(model):
        check_causal_lm(model)


def _served_name(name: str) -> str:
    path = Path(name)
    return path.name if path.exists() else name


def _folder(name: str) -> str | Path:
    """A local path as given; a hub id downloaded (so the tokenizer is found beside it)."""
    from wxb.hub import resolve

    return name if Path(name).exists() else resolve(name)


class Served:
    """The server's state: ``status`` is "loading", then "ok" or "error" (with ``error``)."""

    def __init__(self, settings: ServeSettings, index: Any = None) -> None:
        self.settings = settings
        self.index = index  # the rag index (a wxb.rag.index.Index), read by create_app
        self.status, self.error = "loading", None
        self.created = int(time.time())
        self.model_id = None if settings.model is None else (
            settings.served_model_name or _served_name(settings.model))
        self.embedding_id = None if settings.embedding_model is None else _served_name(
            settings.embedding_model)
        self.model: Any = None
        self.tokenizer: Any = None
        # The engine's thread runs all of the server's torch work (see wxb.serve.engine);
        # ``engine`` is set once a language model decodes on it.
        self.worker = Engine(max_concurrency=settings.max_concurrency,
                             max_queue=settings.max_queue)
        self.engine: Engine | None = None
        self.eos_ids: frozenset[int] = frozenset()
        self.embedder: Any = None
        self.retriever: Any = None
        self.transcriber: Any = None  # a Whisper model's Transcriber
        self._token_texts: dict[int, str] = {}

    def load(self) -> None:
        """Read the folders (slow: run it on the worker, ``await worker.call(load)``)."""
        if self.settings.transcribes:
            from wxb.tasks.speech_recognition.pipeline import Transcriber

            self.transcriber = Transcriber(self.settings.model)
        elif self.settings.model is not None:
            from wxb.tasks.causal_lm.pipeline import load_causal_lm

            folder = _folder(self.settings.model)
            self.model, self.tokenizer = load_causal_lm(folder)
            if self.settings.adapter is not None:
                from wxb.peft.lora import load_adapter

                load_adapter(self.model, self.settings.adapter)
            self.eos_ids = frozenset(end_of_sequence_ids(self.model, self.tokenizer, folder))
        if self.settings.embedding_model is not None:
            from wxb.tasks.embed.pipeline import SentenceEmbedder

            self.embedder = SentenceEmbedder(_folder(self.settings.embedding_model))
        if self.index is not None:
            from wxb.rag.retrieve import Retriever

            self.retriever = Retriever(self.index)
            self.retriever.prepare(self.settings.rag_method)

    def start(self) -> None:
        if self.model is not None:
            self.worker.attach(self.model)
            self.engine = self.worker
        self.status = "ok"

    def stop(self) -> None:
        self.status = "stopped"
        self.worker.stop()

    @property
    def context(self) -> int:
        return self.engine.context

    @property
    def vocab_size(self) -> int:
        return self.engine.vocab_size

    def token_text(self, token_id: int) -> str:
        """One token as text (as logprobs show it; a lone byte of a character is U+FFFD)."""
        text = self._token_texts.get(token_id)
        if text is None:
            text = self._token_texts[token_id] = self.tokenizer.decode([token_id])
        return text


def end_of_sequence_ids(model: Any, tokenizer: Any, folder: str | Path) -> set[int]:
    """The ids that end an answer: the config's eos (one or a list), the tokenizer's, and
    generation_config.json's where the folder has one (chat models list their end-of-turn
    token there)."""
    from wxb.errors import CheckpointError
    from wxb.io import read_json_object

    values = [model.config.eos_token_id, tokenizer.eos_token_id]
    generation = Path(folder) / "generation_config.json"
    if generation.is_file():
        values.append(read_json_object(generation, CheckpointError).get("eos_token_id"))
    ids: set[int] = set()
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int) and not isinstance(item, bool):
                ids.add(item)
    return ids
