"""`wxb mcp`: a model folder's uses as tools of the Model Context Protocol, so that any MCP
client (a desktop assistant, an editor, an agent framework) can call them; built on the
official ``mcp`` SDK (its ``MCPServer``), over stdio or streamable HTTP on 127.0.0.1.

What the folder is decides the tools, as the task pipelines decide what a folder serves::

    a causal LM (gpt2, llama; a .gguf file)      generate, chat
      ... with summarization.json                + summarize (the prompt it was trained with)
    ...ForSequenceClassification                 classify          (wxb.tasks.text_classify)
    ...ForTokenClassification                    tag               (wxb.tasks.token_classify)
    an encoder-decoder                           translate         (wxb.tasks.translation), or
      ... with summarization.json / T5's params  summarize         (wxb.tasks.summarization)
    an encoder (BertModel, sentence-transformers) embed            (wxb.rag.embed)
    every model                                  tokenize, count_parameters
    --embedder DIR                               embed with that encoder
    --index INDEX                                search            (wxb.rag: dense, bm25, hybrid)

Resources: ``wxb://model/config`` (the model's config.json) and ``wxb://model/card`` (the
folder's README.md, else a summary written from the model).

Every argument is typed and bounded in the tool's input schema (texts of at most ``MAX_CHARS``
characters, at most ``MAX_TOKENS`` new tokens, ``MAX_ITEMS`` texts or messages, ``MAX_K``
passages) and checked against it before the tool runs. A bad call (a missing, unknown,
mistyped or oversized argument, or input the model refuses) comes back as a tool error
(``isError``) of one line naming the argument, and the server goes on serving. Calls run one
at a time: one model, one torch thread pool (as ``wxb serve``'s engine thread does all of its
torch work).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from wxb.errors import CheckpointError, ConfigError, WxbError

try:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from pydantic import BaseModel, Field, ValidationError
except ImportError:
    raise ConfigError("wxb mcp needs the mcp package: pip install 'wxb[mcp]'") from None

MAX_CHARS = 20_000  # characters of one text: a prompt, a document, a message, a query
MAX_TOKENS = 1024  # new tokens one call may ask for
MAX_ITEMS = 64  # texts of one embed call, messages of one chat call
MAX_K = 50  # passages of one search, labels of one classification
MAX_BEAMS = 8
CONFIG_URI, CARD_URI = "wxb://model/config", "wxb://model/card"
# A folder's use (see folder_uses) -> the tools it brings.
TOOLS_OF_USE = {"causal-lm": ("generate", "chat"), "text-classify": ("classify",),
                "token-classify": ("tag",), "translation": ("translate",),
                "summarization": ("summarize",)}


def _text(what: str) -> Any:
    return Annotated[str, Field(min_length=1, max_length=MAX_CHARS,
                                description=f"{what} (at most {MAX_CHARS:,} characters)")]


Prompt = _text("the text to continue")
Text = _text("the text")
Query = _text("what to look for")
MaxTokens = Annotated[int, Field(ge=1, le=MAX_TOKENS, description="new tokens to write, at most")]
Temperature = Annotated[float, Field(ge=0, le=2, description=(
    "0: greedy (the most likely token at each step); above 0: sampling, more varied as it "
    "grows"))]
TopP = Annotated[float, Field(gt=0, le=1, description="sampling: keep the most likely tokens "
                                                      "whose probabilities sum to this")]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1, description="sampling: the random seed")]
Beams = Annotated[int, Field(ge=1, le=MAX_BEAMS, description="beam width (1: greedy)")]
TopK = Annotated[int, Field(ge=1, le=MAX_K, description="how many, best first")]
Texts = Annotated[list[Annotated[str, Field(max_length=MAX_CHARS)]], Field(
    min_length=1, max_length=MAX_ITEMS,
    description=f"1 to {MAX_ITEMS} texts of at most {MAX_CHARS:,} characters")]


class Message(BaseModel):
    """One turn of a conversation."""

    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(max_length=MAX_CHARS)]


Messages = Annotated[list[Message], Field(min_length=1, max_length=MAX_ITEMS, description=(
    "the conversation so far, oldest first, ending with the user's turn"))]


def folder_uses(model: str | Path) -> list[str]:
    """What a model folder (or GGUF file) is for, read from its config.json as the pipelines
    read it: ``causal-lm``, ``text-classify``, ``token-classify``, ``translation``,
    ``summarization``, ``embed``; none for another model (tokenize and count_parameters
    still work)."""
    from wxb.models import registry
    from wxb.models.bert import BertModel
    from wxb.models.checkpoint import read_config_json
    from wxb.tasks.summarization.decoder import holds_causal_lm
    from wxb.tasks.summarization.model import SETTINGS_FILE

    folder = Path(model)
    summarizes = (folder / SETTINGS_FILE).is_file()
    if holds_causal_lm(model):
        return ["causal-lm"] + (["summarization"] if summarizes else [])
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"--model {model} is neither a model folder (no config.json) nor "
                              "a .gguf file")
    values = read_config_json(config)
    cls = registry.model_class(values.get("model_type"), (values.get("architectures")
                                                         or [None])[0])
    for head, use in (("ForSequenceClassification", "text-classify"),
                      ("ForTokenClassification", "token-classify")):
        if cls.__name__.endswith(head):
            return [use]
    if getattr(cls.config_class, "is_encoder_decoder", False):
        params = (values.get("task_specific_params") or {})
        return (["summarization"] if summarizes else
                ["translation"] + (["summarization"] if "summarization" in params else []))
    return ["embed"] if issubclass(cls, BertModel) else []


class ModelTools:
    """The loaded model and its tokenizer (with the pipelines of its uses), the embedder and
    the retriever, and one method per tool: a method's signature is the tool's input schema,
    its docstring the tool's description."""

    def __init__(self, model: str | Path, embedder: str | Path | None = None,
                 index: str | Path | None = None) -> None:
        from wxb.rag.embed import Embedder

        self.source = Path(model)
        self.uses = folder_uses(model)
        self.pipelines = self._load_pipelines(str(model))
        self.model, self.tokenizer = self._model_and_tokenizer()
        encoder = self.pipelines.get("embed")
        self.embedder = Embedder(embedder) if embedder is not None else encoder
        self.retriever = None
        if index is not None:
            from wxb.rag.retrieve import Retriever

            self.retriever = Retriever(index, self.embedder)
            _ = self.retriever.embedder  # loaded and checked now, not at the first search
        self._lock = threading.Lock()

    def _load_pipelines(self, path: str) -> dict[str, Any]:
        """The task pipeline of each use (``wxb.pipeline``: its names are the uses), the chat
        model (a decoder-only summarizer's own, not a second copy) and an encoder as the
        retrieval ``Embedder`` (its pipeline, with truncation reported)."""
        from wxb.rag.embed import Embedder
        from wxb.tasks import pipeline
        from wxb.tasks.models import load_chat_model

        loaded = {use: pipeline(use, path) for use in self.uses
                  if use not in ("causal-lm", "embed")}
        if "causal-lm" in self.uses:
            summarizer = loaded.get("summarization")
            lm, tokenizer = ((summarizer.model, summarizer.tokenizer) if summarizer else
                             load_chat_model(path, require_template=False))
            loaded["causal-lm"] = (lm.eval(), tokenizer)
        if "embed" in self.uses:
            loaded["embed"] = Embedder(path)
        return loaded

    def _model_and_tokenizer(self) -> tuple[Any, Any]:
        """The model the pipelines hold, and the tokenizer that reads its input."""
        import wxb

        if not self.pipelines:
            return wxb.from_pretrained(self.source).eval(), wxb.load_tokenizer(self.source)
        use, loaded = next(iter(self.pipelines.items()))
        if use == "causal-lm":
            return loaded
        if use == "embed":
            return loaded.pipeline.model, loaded.tokenizer
        return loaded.model, getattr(loaded, "tokenizer", None) or loaded.source_tokenizer

    # ------------------------------------------------------------------ what is served

    def tool_names(self) -> list[str]:
        names = [name for use in self.uses for name in TOOLS_OF_USE.get(use, ())]
        if self.embedder is not None:
            names.append("embed")
        if self.retriever is not None:
            names.append("search")
        return [*names, "tokenize", "count_parameters"]

    def tools(self) -> list[Callable[..., Any]]:
        """The tools of this model, each run one call at a time."""
        return [self._one_at_a_time(getattr(self, name)) for name in self.tool_names()]

    def _one_at_a_time(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def run(**arguments: Any) -> Any:
            with self._lock:
                return method(**arguments)
        return run

    def describe(self) -> str:
        """One line on what is served (the server's instructions to a client)."""
        what = f"{type(self.model).__name__} ({self.model.config.model_type}) from {self.source}"
        extra = [f"embeddings of {self.embedder.identity['name']}"] if self.embedder else []
        if self.retriever is not None:
            extra.append(f"search over {len(self.retriever.index)} passages")
        return f"wxb serves {what}" + "".join(f"; {e}" for e in extra) + (
            f". Tools: {', '.join(self.tool_names())}.")

    def config_json(self) -> str:
        """The model's config.json."""
        path = self.source / "config.json"
        if path.is_file():
            return path.read_text(encoding="utf-8")
        return json.dumps(self.model.config.to_dict(), indent=2)  # a .gguf file has none

    def card(self) -> str:
        """The model card: the folder's README.md, else a summary of the model."""
        readme = self.source / "README.md"
        if readme.is_file():
            return readme.read_text(encoding="utf-8")
        counts = self.count_parameters()
        config = self.model.config.to_dict()
        shape = {k: config[k] for k in ("vocab_size", "hidden_size", "n_embd", "d_model",
                                        "num_hidden_layers", "n_layer", "num_attention_heads",
                                        "max_position_embeddings", "n_positions") if k in config}
        lines = [f"# {self.source.name}", "",
                 f"{counts['model']} ({counts['model_type']}) with {counts['total']:,} "
                 f"parameters, from `{self.source}` (no README.md there; this card is written "
                 "by wxb).", "", f"Uses: {', '.join(self.uses) or 'none of the task pipelines'}.",
                 f"Tools: {', '.join(self.tool_names())}.", "", "| field | value |",
                 "|---|---|", *[f"| {k} | {v} |" for k, v in shape.items()]]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ the tools

    def generate(self, prompt: Prompt, max_tokens: MaxTokens = 128,
                 temperature: Temperature = 0.0, top_p: TopP = 1.0,
                 seed: Seed | None = None) -> dict[str, Any]:
        """Continue a text with the language model; returns the new text only."""
        from wxb.tasks.causal_lm.pipeline import complete

        lm, tokenizer = self.pipelines["causal-lm"]
        self._check_room("prompt", len(tokenizer.encode(prompt)), max_tokens)
        return {"text": complete(lm, tokenizer, prompt,
                                 **_sampling(max_tokens, temperature, top_p, seed))}

    def chat(self, messages: Messages, max_tokens: MaxTokens = 256,
             temperature: Temperature = 0.0, top_p: TopP = 1.0,
             seed: Seed | None = None) -> dict[str, Any]:
        """Answer the last user message of a conversation with the chat model (its chat
        template, or a plain "Role: text" format when it has none)."""
        from wxb.tasks.causal_lm.pipeline import Chat

        if messages[-1].role != "user":
            raise ConfigError(f"messages: the last message must be the user's, got role "
                              f"{messages[-1].role!r}")
        total = sum(len(m.content) for m in messages)
        if total > MAX_CHARS:
            raise ConfigError(f"messages: {total:,} characters in all; at most {MAX_CHARS:,}")
        lm, tokenizer = self.pipelines["causal-lm"]
        conversation = Chat(lm, tokenizer, **_sampling(max_tokens, temperature, top_p, seed))
        turns = [m.model_dump() for m in messages]
        prompt = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False,
                                               chat_template=conversation.template)
        self._check_room("messages", len(tokenizer.encode(prompt, add_special_tokens=False)),
                         max_tokens)
        conversation.messages = turns[:-1]
        answer = "".join(conversation.reply(messages[-1].content)).strip()
        return {"role": "assistant", "content": answer}

    def _check_room(self, argument: str, tokens: int, max_tokens: int) -> None:
        """Refuse a prompt that, with ``max_tokens`` new tokens, overflows the context window."""
        config = self.pipelines["causal-lm"][0].config
        window = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None)
        if window is not None and tokens + max_tokens > window:
            raise ConfigError(f"{argument}: {tokens} tokens and max_tokens {max_tokens} exceed "
                              f"the model's context window of {window} tokens; shorten the "
                              f"{argument} or ask for at most {max(window - tokens, 0)} tokens")

    def classify(self, text: Text, text_pair: Text | None = None,
                 top_k: TopK = 1) -> dict[str, Any]:
        """Label a text (or a pair of texts) with the classifier: its best labels and their
        probabilities, best first."""
        ranked = self.pipelines["text-classify"]([text], None if text_pair is None else
                                                 [text_pair], top_k=None)[0]
        return {"labels": ranked[:top_k]}

    def tag(self, text: Text) -> dict[str, Any]:
        """Find the named entities of a text with the tagger (words are runs of non-space
        characters): each entity's group, words, character span and score."""
        return {"entities": self.pipelines["token-classify"](text)}

    def translate(self, text: Text, max_tokens: MaxTokens = 64,
                  num_beams: Beams = 4) -> dict[str, Any]:
        """Translate a text with the translation model."""
        out = self.pipelines["translation"](text, max_new_tokens=max_tokens, num_beams=num_beams)
        return {"translation": out[0]["translation_text"]}

    def summarize(self, text: Text, max_tokens: MaxTokens | None = None,
                  num_beams: Beams | None = None) -> dict[str, Any]:
        """Summarize a document with the summarization model (by default with the settings it
        was trained with)."""
        settings = {k: v for k, v in (("max_new_tokens", max_tokens), ("num_beams", num_beams))
                    if v is not None}
        return {"summary": self.pipelines["summarization"](text, **settings)[0]["summary_text"]}

    def embed(self, texts: Texts) -> dict[str, Any]:
        """Sentence embeddings of texts (pooled and normalised as the encoder's folder says;
        a text longer than the encoder's limit is truncated, and said so)."""
        out = self.embedder(texts)
        return {"model": self.embedder.identity["name"], "dim": self.embedder.dim,
                "embeddings": out.vectors.tolist(), "truncated": out.truncated}

    def search(self, query: Query, k: TopK = 5,
               method: Literal["dense", "bm25", "hybrid"] = "hybrid") -> dict[str, Any]:
        """Find the passages of the index that best match a query, best first: dense
        (embeddings), bm25 (terms) or hybrid (both, fused as the index says); each passage
        with its document id and character offsets there."""
        result = self.retriever.search(query, k, method)
        return {"query": query, "method": method, "truncated": result.truncated,
                "hits": [{"rank": hit.rank, "score": hit.score, **hit.chunk.to_dict()}
                         for hit in result.hits]}

    def tokenize(self, text: Text, add_special_tokens: bool = True) -> dict[str, Any]:
        """Split a text into the model's tokens: each token, its id and its character span."""
        encoding = self.tokenizer(text, add_special_tokens=add_special_tokens,
                                  return_offsets_mapping=True)
        ids = encoding["input_ids"]
        return {"count": len(ids), "tokens": self.tokenizer.convert_ids_to_tokens(ids),
                "ids": ids, "offsets": encoding["offset_mapping"]}

    def count_parameters(self) -> dict[str, Any]:
        """The model's parameters: total, trainable, and by component."""
        from wxb.models.params import parameter_breakdown

        rows = parameter_breakdown(self.model)
        return {"model": type(self.model).__name__, "model_type": self.model.config.model_type,
                "total": sum(r.parameters for r in rows),
                "trainable": sum(r.trainable for r in rows),
                "components": [{"component": r.component, "parameters": r.parameters,
                                "trainable": r.trainable, "formula": r.formula} for r in rows]}


def _sampling(max_tokens: int, temperature: float, top_p: float,
              seed: int | None) -> dict[str, Any]:
    """generate()'s settings; temperature 0 is greedy decoding, as in the OpenAI API."""
    if temperature == 0:
        return {"max_new_tokens": max_tokens, "do_sample": False}
    return {"max_new_tokens": max_tokens, "do_sample": True, "temperature": temperature,
            "top_p": top_p, "top_k": None, "seed": seed}


class ToolServer(MCPServer):
    """The SDK's MCPServer over one model's tools and resources, with every failed call's
    error one line naming the argument: an unknown argument is refused (the tool's arguments
    listed), a schema violation says which argument and why, and a wxb error keeps its own
    message. Any other exception stays the SDK's generic tool error (its traceback logged on
    the server's stderr)."""

    def __init__(self, tools: ModelTools) -> None:
        import wxb

        super().__init__("wxb", version=wxb.__version__, instructions=tools.describe(),
                         log_level="WARNING")
        self.tools = tools
        for tool in tools.tools():
            self.add_tool(tool)
        self.resource(CONFIG_URI, name="config", mime_type="application/json",
                      description="the model's config.json")(tools.config_json)
        self.resource(CARD_URI, name="card", mime_type="text/markdown",
                      description="the model card (README.md, else a summary)")(tools.card)

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Any = None) -> Any:
        schema = next((t.input_schema for t in await self.list_tools() if t.name == name), None)
        known = list((schema or {}).get("properties", {}))
        unknown = [key for key in arguments if key not in known]
        if schema is not None and unknown:
            raise ToolError(f"{name}: unknown argument {unknown[0]!r}; its arguments are: "
                            f"{', '.join(known) or 'none'}")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as err:
            if isinstance(err.__cause__, ValidationError):
                raise ToolError(argument_error(name, err.__cause__)) from None
            if isinstance(err.__cause__, WxbError):
                raise ToolError(f"{name}: {err.__cause__}") from None
            raise


def argument_error(tool: str, error: ValidationError) -> str:
    """A validation error of a tool's arguments as one line naming the first wrong one."""
    errors = error.errors()
    first = errors[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    where = where.lstrip(".") or "arguments"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if first["type"] == "missing":
        return f"{tool}: argument {where} is missing{more}"
    why = first["msg"][:1].lower() + first["msg"][1:]
    return f"{tool}: argument {where}: {why}, got {_shown(first['input'])}{more}"


def _shown(value: Any) -> str:
    """A wrong value as an error line shows it: short ones as they are, long ones by size."""
    if isinstance(value, str | list | dict) and len(value) > 40:
        return f"a {type(value).__name__} of length {len(value):,}"
    return repr(value)


def build_server(model: str | Path, embedder: str | Path | None = None,
                 index: str | Path | None = None) -> ToolServer:
    """The MCP server of a model folder (and an embedder folder, an index folder): everything
    is loaded here, so a bad folder fails before anything is served."""
    return ToolServer(ModelTools(model, embedder, index))


def serve(server: MCPServer, http: bool = False, port: int = 8000) -> None:
    """Serve over stdio (the client starts this process), or streamable HTTP at
    http://127.0.0.1:PORT/mcp (this machine only)."""
    if http:
        server.run("streamable-http", host="127.0.0.1", port=port)
    else:
        server.run("stdio")
