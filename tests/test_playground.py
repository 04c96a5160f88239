"""The web playground (wxb/serve/static) in a real headless Chromium against a real server: the
header names the model, answers stream in token by token and equal the non-streamed answer,
Stop ends the request on the server and keeps the partial answer in the history, New
conversation forgets, errors show in the page, and the page fits a 360 px phone."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from served import Server

from wxb.models.llama import LlamaConfig, LlamaForCausalLM
from wxb.tokenizers.char import CharTokenizer
from wxb.tokenizers.chat import CHATML

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
KEY = "sk-playground-test"
NAME = "tiny-chat"
CONTEXT = 4096
TEXT = ("systemuserassistant\nhello there, what is a model? 0123456789 "
        "你好世界中文模型回答问题的是了我们")
RUNS = Path(__file__).resolve().parent.parent / "runs"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"no Chromium to drive ({CHROMIUM} is missing: apt-get install chromium, "
           "or `make setup`, which installs it where apt-get works)")


# ---------------------------------------------------------------------- the served model

def chat_model(folder: Path) -> Path:
    """A random LLaMA whose greedy answer never ends early: special tokens (and the newline,
    which a random model repeats once it starts) score 0, and every other token has a twin with
    the opposite output weights, so some token always scores above 0 and answers run to
    max_tokens (long enough to watch them stream and to stop them)."""
    tok = CharTokenizer.train([TEXT], added_tokens=["<|im_start|>", "<|im_end|>"])
    tok.chat_template = CHATML
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT,
        bos_token_id=None, eos_token_id=None, pad_token_id=tok.pad_token_id))
    special = {tok.token_to_id(t) for t in ("<|im_start|>", "<|im_end|>", "\n")}
    special |= {i for i in (tok.pad_token_id, tok.unk_token_id) if i is not None}
    ordinary = [i for i in range(tok.vocab_size) if i not in special]
    with torch.no_grad():
        head = model.lm_head.weight
        head[sorted(special)] = 0
        if len(ordinary) % 2:
            head[ordinary.pop()] = 0
        half = len(ordinary) // 2
        head[ordinary[half:]] = -head[ordinary[:half]]
    model.save_pretrained(folder)
    tok.save(folder)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from wxb.serve.app import ServeSettings, create_app

    folder = chat_model(tmp_path_factory.mktemp("model"))
    app = create_app(ServeSettings(model=str(folder), api_key=KEY, served_model_name=NAME))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest, and leaves the browser one
    try:
        with Server(app) as running:
            running.wait_ready()
            yield running
    finally:
        torch.set_num_threads(threads)


def api(server: Server, path: str, body: dict | None = None) -> tuple[int, str]:
    """(status, text) of a GET, or of a POST of ``body`` as JSON, with the API key."""
    request = urllib.request.Request(
        server.url + path, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def metrics(server: Server) -> dict[str, float]:
    _, text = api(server, "/metrics")
    return {m[1]: float(m[2]) for m in re.finditer(r"^(\w+) ([-\d.e+]+)$", text, re.M)}


# ---------------------------------------------------------------------- the browser

@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    """The playground with the API key already in local storage, as a returning user has it."""
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    context.add_init_script(f"localStorage.setItem('wxb.playground.apiKey', {json.dumps(KEY)})")
    opened = context.new_page()
    opened.goto(server.url + "/")
    opened.wait_for_function("document.getElementById('model-name').textContent === "
                             + json.dumps(NAME))
    yield opened
    context.close()


def set_controls(page, *, temperature=None, top_p=None, max_tokens=None, system=None) -> None:
    for selector, value in (("#temperature", temperature), ("#top-p", top_p),
                            ("#max-tokens", max_tokens), ("#system", system)):
        if value is not None:
            page.fill(selector, str(value))


def answers(page) -> list[str]:
    return page.locator(".message.assistant .content").all_text_contents()


def send(page, text: str) -> dict:
    """Types ``text``, presses Send; returns the JSON body the page posted."""
    page.fill("#prompt", text)
    with page.expect_request("**/v1/chat/completions") as request:
        page.click("#send")
    return request.value.post_data_json


def wait_idle(page) -> None:
    page.wait_for_function("!window.wxbPlayground.state.controller", timeout=20000)


def non_streamed(server: Server, body: dict) -> str:
    status, text = api(server, "/v1/chat/completions", {**body, "stream": False})
    assert status == 200, text
    return json.loads(text)["choices"][0]["message"]["content"]


# ---------------------------------------------------------------------- the tests

def test_the_header_names_the_model_and_the_api_key_is_asked_for_and_kept(browser, server):
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/")  # the page and /static are not guarded by the key
    alert = page.locator("#error")
    alert.wait_for(state="visible")
    assert "401" in alert.text_content() and "API key" in alert.text_content()
    assert page.text_content("#model-name") == "unavailable"

    page.fill("#api-key", KEY)
    page.press("#api-key", "Tab")  # the change event: saved, and the model is asked again
    page.wait_for_function(f"document.getElementById('model-name').textContent === '{NAME}'")
    assert page.text_content("#model-context") == f"{CONTEXT:,}"
    assert alert.is_hidden()
    listed = json.loads(api(server, "/v1/models")[1])["data"][0]
    assert (listed["id"], listed["max_model_len"]) == (NAME, CONTEXT)

    page.reload()
    page.wait_for_function(f"document.getElementById('model-name').textContent === '{NAME}'")
    assert page.input_value("#api-key") == KEY
    assert page.evaluate("document.characterSet") == "UTF-8"
    context.close()


def test_answers_stream_in_and_equal_the_non_streamed_answer(page, server, tmp_path):
    set_controls(page, temperature=0, top_p=1, max_tokens=160, system="你是一个乐于助人的助手。")
    # Every length the answer takes in the page, as the browser renders it.
    page.evaluate("""() => {
        window.seen = [];
        new MutationObserver(() => {
            const last = document.querySelector('.message.assistant:last-child .content');
            if (last) window.seen.push(last.textContent.length);
        }).observe(document.getElementById('messages'),
                   {childList: true, subtree: true, characterData: true});
    }""")
    body = send(page, "你好，请介绍一下你自己。")
    assert body["stream"] is True and body["model"] == NAME
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0, 1, 160)
    assert body["messages"] == [{"role": "system", "content": "你是一个乐于助人的助手。"},
                                {"role": "user", "content": "你好，请介绍一下你自己。"}]
    observed = []  # what the test sees while the answer is coming
    while page.evaluate("!!window.wxbPlayground.state.controller"):
        observed.append(len(answers(page)[-1]))
        time.sleep(0.02)
    wait_idle(page)
    final = answers(page)[-1]
    expected = non_streamed(server, body)
    assert final == expected and len(final) == 160  # a char model: one character a token
    seen = page.evaluate("window.seen")
    growing = sorted({n for n in seen if 0 < n < len(final)})
    assert len(growing) >= 2, f"the answer did not grow in steps: {seen}"
    assert seen == sorted(seen)  # text is only ever appended
    assert len({n for n in observed if n < len(final)}) >= 2, observed
    assert page.locator(".message.user .content").text_content() == "你好，请介绍一下你自己。"
    assert "Reached the max-tokens limit." in page.text_content(".message.assistant")

    # The next turn sends the whole conversation back, and its answer is the server's too.
    body = send(page, "再说一遍")
    wait_idle(page)
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["messages"][2]["content"] == final
    assert answers(page)[-1] == non_streamed(server, body)
    assert page.locator(".message").count() == 4

    RUNS.mkdir(exist_ok=True)
    for path in (RUNS / "playground.png", tmp_path / "playground.png"):
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000


def test_stop_ends_the_request_and_keeps_the_partial_answer(page, server):
    before = metrics(server)
    set_controls(page, temperature=0, max_tokens=CONTEXT - 100)
    send(page, "hello there")
    page.wait_for_function("(document.querySelector('.message.assistant .content') || "
                           "{textContent: ''}).textContent.length > 40")
    page.click("#stop")
    wait_idle(page)
    partial = answers(page)[-1]
    time.sleep(0.5)
    assert answers(page)[-1] == partial  # it stopped growing
    assert 40 < len(partial) < CONTEXT - 100
    assert "Stopped." in page.text_content(".message.assistant")
    assert page.is_enabled("#send") and page.is_disabled("#stop")

    # The server saw the client go away: the request ended long before max_tokens.
    deadline = time.monotonic() + 10
    while True:
        now = metrics(server)
        done = (now["wxb_requests_finished_total"] - before["wxb_requests_finished_total"] == 1
                and now["wxb_running_requests"] == 0)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert done, now
    generated = now["wxb_generation_tokens_total"] - before["wxb_generation_tokens_total"]
    assert len(partial) <= generated < (CONTEXT - 100) / 2

    # The partial answer is part of the conversation: the next turn sends it back.
    set_controls(page, max_tokens=8)
    body = send(page, "go on")
    wait_idle(page)
    assert body["messages"] == [{"role": "user", "content": "hello there"},
                                {"role": "assistant", "content": partial},
                                {"role": "user", "content": "go on"}]
    assert page.locator(".message").count() == 4

    # New conversation forgets it all.
    page.click("#new-conversation")
    assert page.locator(".message").count() == 0
    assert page.evaluate("window.wxbPlayground.state.messages") == []
    assert page.is_visible("#empty")
    body = send(page, "hello")
    wait_idle(page)
    assert body["messages"] == [{"role": "user", "content": "hello"}]


def test_server_and_network_errors_show_in_the_page(page, server):
    set_controls(page, max_tokens=CONTEXT * 10)
    body = send(page, "hello")
    wait_idle(page)
    status, text = api(server, "/v1/chat/completions", body)
    assert status == 400, text
    message = json.loads(text)["error"]["message"]
    alert = page.locator("#error")
    assert alert.is_visible()
    assert message in alert.text_content() and "400" in alert.text_content()
    # Nothing was answered: the question is back in the box, not in the conversation.
    assert page.locator(".message").count() == 0
    assert page.input_value("#prompt") == "hello"
    assert page.evaluate("window.wxbPlayground.state.messages") == []

    set_controls(page, max_tokens=4)
    page.route("**/v1/chat/completions", lambda route: route.abort("connectionrefused"))
    send(page, "hello")
    wait_idle(page)
    assert "Could not reach the server" in alert.text_content()
    page.unroute("**/v1/chat/completions")

    set_controls(page, temperature=3)
    page.fill("#prompt", "hello")
    page.click("#send")
    assert "Temperature must be a number from 0 to 2" in alert.text_content()
    assert page.locator(".message").count() == 0

    set_controls(page, temperature=0)
    page.click("#send")
    wait_idle(page)
    assert alert.is_hidden() and page.locator(".message").count() == 2


def test_event_stream_parser_decodes_utf8_split_anywhere(page):
    """Network chunks can end inside a character or a line; the page reads whole ones."""
    events = page.evaluate("""() => {
        const chunk = (text) => JSON.stringify({choices: [{delta: {content: text}}]});
        const stream = ": keep-alive\\r\\n\\r\\ndata: " + chunk("你好") + "\\r\\n\\r\\n"
            + "data: " + chunk("世界 ok") + "\\n\\ndata: [DONE]\\n\\n";
        const bytes = new TextEncoder().encode(stream);
        const parser = new window.wxbPlayground.SSEParser();
        const out = [];
        for (let i = 0; i < bytes.length; i += 1) out.push(...parser.push(bytes.slice(i, i + 1)));
        out.push(...parser.end());
        return out;
    }""")
    assert events[-1] == "[DONE]"
    assert [json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1]] == \
        ["你好", "世界 ok"]


def test_the_page_fits_a_360_px_phone(browser, server, tmp_path):
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    context.add_init_script(f"localStorage.setItem('wxb.playground.apiKey', {json.dumps(KEY)})")
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_function(f"document.getElementById('model-name').textContent === '{NAME}'")
    # The settings start folded so the conversation has the screen; they open with a tap.
    assert page.is_hidden("#temperature")
    page.tap("#settings summary")
    assert page.is_visible("#temperature") and page.is_visible("#new-conversation")
    set_controls(page, temperature=0, max_tokens=80)
    page.tap("#settings summary")
    send(page, "你好，请介绍一下你自己。")
    wait_idle(page)
    assert len(answers(page)[-1]) == 80
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    for selector in ("h1", "#model-info", "#prompt", "#send", "#stop", ".message.assistant"):
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360, selector
    page.screenshot(path=str(tmp_path / "playground-360.png"), full_page=True)
    shutil.copy(tmp_path / "playground-360.png", RUNS / "playground-360.png")
    context.close()
