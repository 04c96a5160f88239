"""Chat templates: a conversation rendered to text exactly as ``transformers`` renders it.

A chat template is a Jinja program shipped with a model (``chat_template`` in
``tokenizer_config.json``). Templates from the Hub are untrusted code, so they run in Jinja's
immutable sandbox, with the same few helpers ``transformers`` gives them: ``raise_exception``,
``strftime_now`` and a ``tojson`` filter that does not escape HTML.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from wxb.errors import ConfigError, DataError

# ChatML (Qwen, many fine-tunes): <|im_start|>role\ncontent<|im_end|>\n
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Llama-3 instruct: <|begin_of_text|> once, a header per message, content stripped, <|eot_id|>
# after each turn (the template Meta ships with Llama-3-8B-Instruct, same output).
LLAMA3 = (
    "{% for message in messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)

BUILTIN_TEMPLATES = {"chatml": CHATML, "llama3": LLAMA3}


@lru_cache(maxsize=32)
def compile_template(template: str):
    """Compile ``template`` in a sandbox with the helpers ``transformers`` provides."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as err:
        raise ConfigError(f"chat template does not parse: {err.message} (line {err.lineno})")\
            from None


def render_chat(template: str, messages: list[dict[str, Any]], *,
                add_generation_prompt: bool = False, special_tokens: dict[str, str] | None = None,
                tools: list[dict] | None = None, documents: list[dict] | None = None,
                **kwargs: Any) -> str:
    """Render ``messages`` (``[{"role": ..., "content": ...}, ...]``) with ``template``.

    ``special_tokens`` (``{"bos_token": "<s>", ...}``) and ``kwargs`` become template
    variables, as in ``transformers.apply_chat_template``; ``kwargs`` win on a clash.
    """
    import jinja2

    template = BUILTIN_TEMPLATES.get(template, template)
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise DataError(f"message {i} must be a dict with 'role' and 'content', "
                            f"got {message!r:.80}")
    variables = {**(special_tokens or {}), **kwargs}
    try:
        return compile_template(template).render(
            messages=messages, tools=tools, documents=documents,
            add_generation_prompt=add_generation_prompt, **variables)
    except jinja2.TemplateError as err:
        raise DataError(f"chat template refused the conversation: {err}") from None
