"""`wxb serve --rag INDEX`: a chat request's last user turn is searched for, the passages go
into its system message numbered [1]..[k], and the response names them (wxb_sources), streamed
or not; bad settings and requests are refused in one line."""

from __future__ import annotations

import json

import httpx
import pytest
from served import Server
from test_rag import MINILM, run_wxb, save_chat_model

import wxb
from wxb.errors import CheckpointError, ConfigError
from wxb.rag.chunk import chunk_documents
from wxb.rag.documents import Document
from wxb.rag.embed import Embedder
from wxb.rag.index import Index
from wxb.rag.prompt import with_passages
from wxb.rag.retrieve import Retriever
from wxb.serve.app import ServeSettings, create_app

DOCS = [Document("python", "Python was created by Guido van Rossum.", "python.txt"),
        Document("tea", "Green tea is made from unoxidised leaves.", "tea.txt"),
        Document("cats", "Cats sleep most of the day.", "cats.txt")]
QUESTION = "Who created Python?"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-rag")
    embedder = Embedder(MINILM)
    index = Index.build(chunk_documents(DOCS, "sentences", 1, 0), embedder)
    return {"chat": save_chat_model(root / "chat"), "index": index.save(root / "index"),
            "embedder": embedder}


@pytest.fixture(scope="module")
def server(folders):
    app = create_app(ServeSettings(model=str(folders["chat"]), rag=str(folders["index"]),
                                   rag_k=2))
    with Server(app) as running:
        running.wait_ready()
        yield running


def expected(folders, messages):
    """The prompt ids the server should build, and the sources it should return."""
    hits = Retriever(Index.load(folders["index"]), folders["embedder"]).search(
        QUESTION, 2, "hybrid").hits
    turns, prompt = with_passages(messages, hits)
    tok = wxb.load_tokenizer(folders["chat"])
    text = tok.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    return tok.encode(text, add_special_tokens=False), prompt.sources


def test_chat_requests_get_the_passages_and_return_their_sources(server, folders):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
                {"role": "user", "content": QUESTION}]
    ids, sources = expected(folders, messages)
    assert sources[0]["document_id"] == "python" and sources[0]["text"] == DOCS[0].text
    body = {"messages": messages, "max_tokens": 3, "temperature": 0}
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60).json()
    assert answer["usage"]["prompt_tokens"] == len(ids)
    assert answer["wxb_sources"] == sources
    assert answer["choices"][0]["message"]["role"] == "assistant"

    for include_usage in (False, True):
        stream = {**body, "stream": True,
                  **({"stream_options": {"include_usage": True}} if include_usage else {})}
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=stream,
                          timeout=60) as response:
            events = [line.removeprefix("data: ") for line in response.iter_lines()
                      if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        last = chunks[-1]
        assert last["choices"] == [] and last["wxb_sources"] == sources
        assert ("usage" in last and last["usage"]["prompt_tokens"] == len(ids)) == include_usage
        assert all("wxb_sources" not in c for c in chunks[:-1])
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]
                       if c["choices"])
        assert text == answer["choices"][0]["message"]["content"]


def test_a_conversation_without_user_text_is_400(server):
    body = {"messages": [{"role": "system", "content": "Be brief."}], "max_tokens": 2}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages" and "last user message" in error["message"]
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_bad_rag_settings_are_refused_before_anything_loads(folders, tmp_path, capsys):
    with pytest.raises(ConfigError, match="give the model that answers them"):
        create_app(ServeSettings(model=None, embedding_model=MINILM, rag=str(folders["index"])))
    with pytest.raises(ConfigError, match="rag_k must be a whole number of at least 1"):
        create_app(ServeSettings(model=str(folders["chat"]), rag=str(folders["index"]),
                                 rag_k=0))
    with pytest.raises(ConfigError, match="rag_method 'fuzzy' is not a retrieval method"):
        create_app(ServeSettings(model=str(folders["chat"]), rag=str(folders["index"]),
                                 rag_method="fuzzy"))
    with pytest.raises(CheckpointError, match="is not a wxb rag index"):
        create_app(ServeSettings(model=str(folders["chat"]), rag=str(tmp_path)))
    code, _, err = run_wxb(capsys, "serve", "--model", folders["chat"], "--rag", tmp_path,
                           "--port", "0")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [f"wxb: error: {tmp_path} is not a wxb rag index (has "
                                        f"no index.json); build one with wxb rag index DOCS "
                                        f"--embedder DIR --out {tmp_path}"]
