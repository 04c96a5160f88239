// wxb playground: chat with the model that `wxb serve` serves, over its OpenAI-compatible API.
//
//   GET  v1/models            -> the model's id and context length, shown in the header
//   POST v1/chat/completions  -> stream: true; the answer arrives as server-sent events,
//                                "data: {chunk}" lines ending with "data: [DONE]"
//
// The conversation is a list of {role, content} turns sent back whole on every request: each
// user turn and each assistant answer, including one cut short with Stop.
"use strict";

(() => {
  // This file is served at <root>/static/app.js; the API lives at <root>/v1/.
  const ROOT = new URL("..", document.currentScript.src);
  const KEY_STORAGE = "wxb.playground.apiKey";

  // ------------------------------------------------------------------ server-sent events

  /** Turns the bytes of an event stream into the data of its events, one event at a time.
   *  Bytes may split anywhere, even inside a UTF-8 character (a Chinese character is three
   *  bytes), so they are decoded with a streaming TextDecoder and only whole lines are read. */
  class SSEParser {
    constructor() {
      this.decoder = new TextDecoder("utf-8");
      this.buffer = "";
      this.data = [];
    }

    /** The data of every event completed by these bytes (a Uint8Array). */
    push(bytes) {
      this.buffer += this.decoder.decode(bytes, { stream: true });
      return this.drain(false);
    }

    /** The data of the events still pending when the stream ends. */
    end() {
      this.buffer += this.decoder.decode();
      const events = this.drain(true);
      if (this.data.length) events.push(this.data.join("\n"));
      this.data = [];
      return events;
    }

    drain(final) {
      const events = [];
      for (;;) {
        const match = /\r\n|\r|\n/.exec(this.buffer);
        if (!match) break;
        // A lone "\r" at the end of the buffer may be the first half of "\r\n".
        if (match[0] === "\r" && match.index === this.buffer.length - 1 && !final) break;
        const line = this.buffer.slice(0, match.index);
        this.buffer = this.buffer.slice(match.index + match[0].length);
        this.line(line, events);
      }
      if (final && this.buffer) {
        this.line(this.buffer, events);
        this.buffer = "";
      }
      return events;
    }

    line(line, events) {
      if (line === "") {  // a blank line ends an event
        if (this.data.length) events.push(this.data.join("\n"));
        this.data = [];
        return;
      }
      if (line.startsWith(":")) return;  // a comment (keep-alive)
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") this.data.push(value);
    }
  }

  // ------------------------------------------------------------------ the page

  const $ = (id) => document.getElementById(id);
  const el = {
    modelName: $("model-name"),
    modelContext: $("model-context"),
    system: $("system"),
    temperature: $("temperature"),
    topP: $("top-p"),
    maxTokens: $("max-tokens"),
    apiKey: $("api-key"),
    newConversation: $("new-conversation"),
    error: $("error"),
    errorText: $("error-text"),
    errorClose: $("error-close"),
    messages: $("messages"),
    scroller: $("scroller"),
    empty: $("empty"),
    composer: $("composer"),
    prompt: $("prompt"),
    send: $("send"),
    stop: $("stop"),
    status: $("status"),
    settings: $("settings"),
  };

  const state = {
    model: null,          // the served model's id
    contextLength: null,  // its max_model_len
    messages: [],         // the conversation: {role: "user" | "assistant", content}
    controller: null,     // the AbortController of the answer being streamed
    conversation: 0,      // bumped by New conversation, so a late answer lands nowhere
  };

  class ServerError extends Error {}

  function headers(json) {
    const out = {};
    if (json) out["Content-Type"] = "application/json";
    const key = el.apiKey.value.trim();
    if (key) out.Authorization = `Bearer ${key}`;
    return out;
  }

  /** The message of an error response: OpenAI's {"error": {"message"}}, else its text. */
  async function errorMessage(response) {
    const text = await response.text();
    let message = text.trim();
    try {
      const body = JSON.parse(text);
      if (body && body.error) {
        message = typeof body.error === "string" ? body.error : body.error.message;
      } else if (body && body.detail) {
        message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      }
    } catch (_) { /* not JSON: keep the text */ }
    if (response.status === 401 && !el.apiKey.value.trim()) {
      message = `${message || "Unauthorized"} — this server needs an API key: enter it in Settings.`;
    }
    return `${response.status} ${response.statusText || ""}`.trim() + (message ? `: ${message}` : "");
  }

  function describe(err) {
    if (err instanceof ServerError) return `Server error ${err.message}`;
    if (err instanceof TypeError) {
      return `Could not reach the server (${err.message}). Is \`wxb serve\` still running?`;
    }
    return `${err.name || "Error"}: ${err.message}`;
  }

  function showError(text) {
    el.errorText.textContent = text;
    el.error.hidden = false;
  }

  function clearError() {
    el.error.hidden = true;
    el.errorText.textContent = "";
  }

  function setStatus(text) {
    el.status.textContent = text;
  }

  // ------------------------------------------------------------------ the model

  async function loadModel() {
    el.modelName.textContent = "loading…";
    el.modelContext.textContent = "…";
    try {
      const response = await fetch(new URL("v1/models", ROOT), { headers: headers(false) });
      if (response.status === 503) {  // the server is up, the model still loading: ask again
        const wait = Math.min(Number(response.headers.get("Retry-After")) || 2, 5);
        el.modelName.textContent = "loading…";
        setStatus(`The server is loading the model; asking again in ${wait} s.`);
        setTimeout(loadModel, wait * 1000);
        return;
      }
      if (!response.ok) throw new ServerError(await errorMessage(response));
      const body = await response.json();
      const model = body.data && body.data[0];
      if (!model) throw new ServerError("the server lists no model");
      state.model = model.id;
      state.contextLength = model.max_model_len ?? null;
      el.modelName.textContent = model.id;
      el.modelContext.textContent = state.contextLength == null
        ? "unknown" : Number(state.contextLength).toLocaleString("en-US");
      document.title = `${model.id} — wxb playground`;
      if (el.status.textContent.startsWith("The server is loading")) setStatus("");
    } catch (err) {
      state.model = null;
      el.modelName.textContent = "unavailable";
      el.modelContext.textContent = "?";
      showError(describe(err));
    }
  }

  // ------------------------------------------------------------------ the conversation

  /** Adds one turn to the page; returns its parts so an answer can grow in place. */
  function addBubble(role, text) {
    const item = document.createElement("article");
    item.className = `message ${role}`;
    const label = document.createElement("span");
    label.className = "role";
    label.textContent = role === "user" ? "You" : "Assistant";
    const content = document.createElement("p");
    content.className = "content";
    const textNode = document.createTextNode(text);  // model output is text, never HTML
    content.append(textNode);
    item.append(label, content);
    el.messages.append(item);
    el.empty.hidden = true;
    return { item, content, textNode };
  }

  function addNote(bubble, text) {
    const note = document.createElement("small");
    note.className = "note";
    note.textContent = text;
    bubble.item.append(note);
  }

  /** Keeps the newest text in view unless the reader has scrolled up to read. */
  function follow(wasAtBottom) {
    if (wasAtBottom) el.scroller.scrollTop = el.scroller.scrollHeight;
  }

  function atBottom() {
    const box = el.scroller;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  }

  /** The sampling settings, or null (with the reason shown) when one is out of range. */
  function settings() {
    const temperature = el.temperature.valueAsNumber;
    const topP = el.topP.valueAsNumber;
    const maxTokens = el.maxTokens.valueAsNumber;
    if (!(temperature >= 0 && temperature <= 2)) {
      showError("Temperature must be a number from 0 to 2.");
      el.temperature.focus();
      return null;
    }
    if (!(topP > 0 && topP <= 1)) {
      showError("Top-p must be a number above 0 and at most 1.");
      el.topP.focus();
      return null;
    }
    if (!(Number.isInteger(maxTokens) && maxTokens >= 1)) {
      showError("Max tokens must be a whole number, 1 or more.");
      el.maxTokens.focus();
      return null;
    }
    return { temperature, top_p: topP, max_tokens: maxTokens };
  }

  function setStreaming(on) {
    el.send.disabled = on;
    el.stop.disabled = !on;
    el.messages.setAttribute("aria-busy", on ? "true" : "false");
  }

  /** Sends the conversation plus ``text`` and streams the answer into the page. */
  async function send(text, sampling) {
    clearError();
    const conversation = state.conversation;
    const user = { role: "user", content: text };
    state.messages.push(user);
    const userBubble = addBubble("user", text);
    const answer = { role: "assistant", content: "" };
    const bubble = addBubble("assistant", "");
    bubble.item.setAttribute("aria-busy", "true");
    follow(true);

    const system = el.system.value.trim();
    const body = {
      model: state.model || undefined,
      messages: [...(system ? [{ role: "system", content: system }] : []), ...state.messages],
      stream: true,
      ...sampling,
    };
    const controller = new AbortController();
    state.controller = controller;
    setStreaming(true);
    setStatus("Generating…");
    const started = performance.now();
    let finish = null;
    let stopped = false;
    let failure = null;
    let chunks = 0;

    try {
      const response = await fetch(new URL("v1/chat/completions", ROOT), {
        method: "POST",
        headers: headers(true),
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!response.ok) throw new ServerError(await errorMessage(response));
      const reader = response.body.getReader();
      const parser = new SSEParser();
      let done = false;
      while (!done) {
        const { value, done: ended } = await reader.read();
        const events = ended ? parser.end() : parser.push(value);
        const wasAtBottom = atBottom();
        for (const data of events) {
          if (data === "[DONE]") {
            done = true;
            break;
          }
          let chunk;
          try {
            chunk = JSON.parse(data);
          } catch (_) {
            throw new ServerError(`sent an event that is not JSON: ${data.slice(0, 200)}`);
          }
          if (chunk.error) {
            throw new ServerError(chunk.error.message || JSON.stringify(chunk.error));
          }
          const choice = chunk.choices && chunk.choices[0];
          if (!choice) continue;
          const delta = choice.delta && choice.delta.content;
          if (delta) {
            answer.content += delta;
            bubble.textNode.appendData(delta);
            chunks += 1;
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
        follow(wasAtBottom);
        if (ended) break;
      }
      if (done) {
        await reader.cancel().catch(() => {});
      } else {
        throw new ServerError("closed the stream before the answer ended");
      }
    } catch (err) {
      if (err.name === "AbortError") {
        stopped = true;
      } else {
        failure = err;
        controller.abort();  // close the response, so the server stops generating too
      }
    }

    if (state.controller === controller) {
      state.controller = null;
      setStreaming(false);
    }
    bubble.item.setAttribute("aria-busy", "false");
    if (conversation !== state.conversation) return;  // New conversation was pressed

    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    if (failure) showError(describe(failure));
    if ((stopped || failure) && !answer.content) {
      // Nothing came back: take the question back into the box, to edit or send again.
      state.messages.splice(state.messages.indexOf(user), 1);
      userBubble.item.remove();
      bubble.item.remove();
      el.empty.hidden = state.messages.length > 0;
      if (!el.prompt.value) el.prompt.value = text;
      setStatus(stopped ? "Stopped before the first token." : "");
      return;
    }
    state.messages.push(answer);  // a partial answer stays: it is sent back next turn
    if (stopped) {
      addNote(bubble, "Stopped.");
      setStatus(`Stopped after ${seconds} s.`);
    } else if (failure) {
      addNote(bubble, "Interrupted by an error.");
      setStatus("");
    } else {
      if (finish === "length") addNote(bubble, "Reached the max-tokens limit.");
      setStatus(`Answered in ${seconds} s (${chunks} chunks, finish: ${finish || "?"}).`);
    }
  }

  function stop() {
    if (state.controller) state.controller.abort();
  }

  function newConversation() {
    stop();
    state.conversation += 1;
    state.messages = [];
    el.messages.replaceChildren();
    el.empty.hidden = false;
    clearError();
    setStatus("New conversation.");
    el.prompt.focus();
  }

  // ------------------------------------------------------------------ wiring

  el.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    if (state.controller) return;  // one answer at a time
    const text = el.prompt.value;
    if (!text.trim()) return;
    const sampling = settings();  // a bad setting keeps the message in the box
    if (!sampling) return;
    el.prompt.value = "";
    send(text, sampling);
  });

  el.prompt.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter is a new line; Enter that confirms an IME candidate (typing
    // Chinese with pinyin) is left to the input method.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      el.composer.requestSubmit();
    }
  });

  el.stop.addEventListener("click", stop);
  el.newConversation.addEventListener("click", newConversation);
  el.errorClose.addEventListener("click", clearError);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.controller) stop();
  });

  el.apiKey.value = localStorage.getItem(KEY_STORAGE) || "";
  el.apiKey.addEventListener("change", () => {
    const key = el.apiKey.value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    clearError();
    loadModel();
  });

  // On a phone the settings start folded, so the conversation has the screen.
  if (window.matchMedia("(max-width: 50rem)").matches) el.settings.open = false;

  setStreaming(false);
  loadModel();

  window.wxbPlayground = { SSEParser, state };
})();
