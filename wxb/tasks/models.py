"""Building and loading the models that several tasks share: a family's class with a given
head, and a causal LM set up for chat; the ``model`` section of the tasks that fine-tune a
causal LM (sft, dpo, reward) and the ``finetune`` section that says what trains."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from wxb.errors import ConfigError
from wxb.models import registry
from wxb.tasks.data import require
from wxb.tasks.sections import Section, choose
from wxb.tokenizers.chat import BUILTIN_TEMPLATES

# A model class's head (the end of its name) -> its name in messages, what it is for, and
# what a model with it is called.
HEADS = {"SequenceClassification": ("sequence-classification", "text classification",
                                    "sequence classifier"),
         "TokenClassification": ("token-classification", "tagging", "token classifier"),
         "QuestionAnswering": ("question-answering", "question answering",
                               "question-answering model")}


def head_architecture(model_type: str, head: str = "SequenceClassification") -> str:
    """The family's class name with that head: BertForSequenceClassification,
    RNNForTokenClassification (``head="TokenClassification"``)."""
    suffix = f"For{head}"
    found = [name for name in registry.FAMILIES.get(model_type, (None, None, ()))[2]
             if name.endswith(suffix)]
    if not found:
        having = [t for t, (_, _, names) in registry.FAMILIES.items()
                  if any(n.endswith(suffix) for n in names)]
        what, task, _ = HEADS[head]
        raise ConfigError(f"model type {model_type!r} has no {what} head; {task} works with: "
                          f"{', '.join(having)}")
    return found[0]


def load_with_head(folder: Any, head: str, device: Any = None) -> tuple[Any, Any]:
    """The model of ``folder`` (in eval mode, on ``device``) and its tokenizer, refused unless
    its class has the ``head`` of ``HEADS`` (a pipeline serves that head only)."""
    from wxb.hub import from_pretrained
    from wxb.tokenizers.load import load_tokenizer

    model = from_pretrained(folder)
    if not type(model).__name__.endswith(f"For{head}"):
        _, task, kind = HEADS[head]
        raise ConfigError(f"{folder} holds a {type(model).__name__}; {task} needs a "
                          f"{kind} (train one with wxb finetune or a recipe)")
    return model.eval().to(device or "cpu"), load_tokenizer(folder)


def load_causal_lm(folder: str | Path) -> tuple[Any, Any]:
    """The causal LM of a folder or GGUF file and its tokenizer, in eval mode."""
    import wxb
    from wxb.models.decoder import CausalLMBase

    model = wxb.from_pretrained(folder)
    if not isinstance(model, CausalLMBase):
        raise ConfigError(f"{folder} holds a {type(model).__name__}, not a causal language "
                          "model (gpt2, llama)")
    return model.eval(), wxb.load_tokenizer(folder)


def load_chat_model(pretrained: str, chat_template: str | None = None, *,
                    require_template: bool = True) -> tuple[Any, Any]:
    """The causal LM of the folder or hub id ``pretrained`` and its tokenizer, with the
    ``chat_template`` (a built-in name or a Jinja template; default: the tokenizer's own),
    and the template's end-of-turn token as an eos of the model. Without ``require_template``
    a tokenizer may have no template (prompts given as plain text)."""
    from wxb.align.sft import end_of_turn_id
    from wxb.hub import from_pretrained, resolve
    from wxb.models.decoder import CausalLMBase
    from wxb.tokenizers.gguf import find_gguf
    from wxb.tokenizers.load import load_tokenizer

    # A GGUF checkpoint (file, folder or packaged id) is read as it is; any other is resolved.
    folder = pretrained if find_gguf(pretrained) is not None else resolve(pretrained)
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


@dataclasses.dataclass
class ChatModelSection(Section):
    """The causal LM a task fine-tunes: the folder or hub id ``pretrained`` (with its
    tokenizer), and the ``chat_template`` (chatml | llama3 | a Jinja template) for a tokenizer
    that has none, or to replace its own."""

    pretrained: str | None = None
    chat_template: str | None = None

    def check(self) -> None:
        require(self, "pretrained", "the causal LM folder (with its tokenizer) to fine-tune, "
                "e.g. model: {pretrained: runs/base/model}")


@dataclasses.dataclass
class FinetuneSection(Section):
    """What trains, as every fine-tuning task reads it (``wxb.peft.strategy`` applies it)::

        strategy: full | head | pooler_head | bottom | gradual | lora | qlora
        freeze_layers: 0        # bottom: layers frozen above the embeddings
        unfreeze_every: 100     # gradual: optimizer steps between unfreezing layers
        layer_decay: 1.0        # layer-wise learning-rate decay (full, head, bottom, gradual)
        r: 8                    # lora / qlora: the rank of B·A
        lora_alpha: 16          #   the update is scaled by lora_alpha / r
        lora_dropout: 0.05      #   dropout on the LoRA path's input
        target_modules: all-linear   # or "q_proj|v_proj" (a regex on module names) or a list
        modules_to_save: null   #   whole modules that train and are saved with the adapter;
                                #   by default a classifier's head
        use_rslora: false       #   scale by lora_alpha / sqrt(r) instead
        adapter: null           #   start from a saved adapter folder (wxb or PEFT)

    ``method`` is the mapping ``apply_strategy`` and ``save_finetuned`` take.
    """

    strategy: str = "full"
    freeze_layers: int = 0
    unfreeze_every: int = 100
    layer_decay: float = 1.0
    r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    modules_to_save: list[str] | None = None
    use_rslora: bool = False
    adapter: str | None = None

    def check(self) -> None:
        # Imported here: the strategies reach the Trainer's callbacks, and inference modules
        # import this one.
        from wxb.peft.strategy import STRATEGIES

        choose("finetune.strategy", self.strategy, STRATEGIES)
        if not 0 < self.layer_decay <= 1:
            raise ConfigError(f"finetune.layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.strategy in ("lora", "qlora") and self.layer_decay != 1.0:
            raise ConfigError("finetune.layer_decay applies to full and freezing strategies, "
                              f"not to {self.strategy}")

    @property
    def method(self) -> dict[str, Any]:
        return self.to_dict()


def load_bilm(folder: str) -> Any:
    """The biLM (``model.elmo``) of a folder the bilm task wrote, in eval mode; a folder that
    is not one is a one-line error."""
    import json

    from wxb.errors import WxbError
    from wxb.models.elmo import ElmoBiLM

    config = Path(folder) / "config.json"
    hint = "give a biLM folder of the bilm task, e.g. runs/bilm-conll/model"
    if not config.is_file():
        raise ConfigError(f"model.elmo: {folder} has no config.json; {hint}")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as error:
        raise ConfigError(f"model.elmo: {config} is not JSON ({error}); {hint}") from None
    if model_type != "elmo":
        raise ConfigError(f"model.elmo: {folder} holds a {model_type!r} model, not a biLM "
                          f"('elmo'); {hint}")
    try:
        return ElmoBiLM.from_pretrained(folder).eval()
    except (WxbError, OSError) as error:
        raise ConfigError(f"model.elmo: {folder} does not load as a biLM ({error})") from None
