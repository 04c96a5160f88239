"""Building and loading the models that several tasks share: a family's class with a given
head, and a causal LM set up for chat."""

from __future__ import annotations

from typing import Any

from wxb.errors import ConfigError
from wxb.models import registry
from wxb.tokenizers.chat import BUILTIN_TEMPLATES

# A model class's head (the end of its name) -> its name in messages, and what it is for.
HEADS = {"SequenceClassification": ("sequence-classification", "text classification"),
         "TokenClassification": ("token-classification", "tagging")}


def head_architecture(model_type: str, head: str = "SequenceClassification") -> str:
    """The family's class name with that head: BertForSequenceClassification,
    RNNForTokenClassification (``head="TokenClassification"``)."""
    suffix = f"For{head}"
    found = [name for name in registry.FAMILIES.get(model_type, (None, None, ()))[2]
             if name.endswith(suffix)]
    if not found:
        having = [t for t, (_, _, names) in registry.FAMILIES.items()
                  if any(n.endswith(suffix) for n in names)]
        what, task = HEADS[head]
        raise ConfigError(f"model type {model_type!r} has no {what} head; {task} works with: "
                          f"{', '.join(having)}")
    return found[0]


def load_chat_model(pretrained: str, chat_template: str | None = None, *,
                    require_template: bool = True) -> tuple[Any, Any]:
    """The causal LM of the folder or hub id ``pretrained`` and its tokenizer, with the
    ``chat_template`` (a built-in name or a Jinja template; default: the tokenizer's own) and the template's end-of-turn token as an eos of the model. Without
    ``require_template`` a tokenizer may have no template (prompts given as plain text)."""
    from wxb.align.sft import end_of_turn_id
    from wxb.hub import from_pretrained, resolve
    from wxb.models.decoder import CausalLMBase
    from wxb.tokenizers.load import load_tokenizer

    folder = resolve(pretrained)
    model = from_pretrained(folder)
    if not isinstance(model, CausalLMBase):
        raise ConfigError(f"{folder} holds a {type(model).__name__}, not a causal language "
                          "model (gpt2, llama)")
    tokenizer = load_tokenizer(folder)
    if chat_template is not None:
        tokenizer.chat_template = BUILTIN_TEMPLATES.get(chat_template, chat_template)
    if tokenizer.chat_template is None:
        if not require_template:
            return model, tokenizer
        raise ConfigError(f"the tokenizer in {folder} has no chat template; give "
                          f"model.chat_template: {' | '.join(BUILTIN_TEMPLATES)} | <a Jinja "
                          "template>")
    end = end_of_turn_id(tokenizer)
    eos = model.config.eos_token_id
    if end is not None and end != eos and not (isinstance(eos, list) and end in eos):
        # Generation stops at any of these: the end of a turn, or the base model's own eos.
        model.config.eos_token_id = end if eos is None else [end, *(
            eos if isinstance(eos, list) else [eos])]
    return model, tokenizer


def pad_id(tokenizer: Any) -> int:
    """The padding id: the tokenizer's pad token, else its eos (as TRL sets it), else 0."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    return 0


