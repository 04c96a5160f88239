"""The classifier a text-classify run trains: its ``model`` section and how it is built.

    model: {pretrained: DIR | hub id, init: pretrained | random, ignore_mismatched_sizes: false,
            <config fields to change, e.g. classifier_dropout>}
           or {type: bert | rnn, tokenizer: DIR | {kind: word, vocab_size: 20000, ...},
               <fields of the family's config>}

A checkpoint gets a fresh head sized to the labels; ``init: random`` keeps its configuration
and tokenizer but starts from fresh weights (the baseline that measures what pretraining
brought). A ``type`` builds a model of that family from scratch, on a tokenizer folder or on
one trained on the training texts from its settings.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch

from wxb.config import check_known_keys
from wxb.data.text import LabelSet
from wxb.errors import ConfigError
from wxb.models import registry
from wxb.models.base import CONFIG_NAME, PreTrainedModel, read_config_json
from wxb.tasks.models import head_architecture
from wxb.tasks.sections import Section
from wxb.tokenizers.base import Tokenizer
from wxb.tokenizers.load import load_tokenizer
from wxb.tokenizers.train import tokenizer_from_settings


@dataclasses.dataclass
class ModelSection(Section):
    """A checkpoint (``pretrained``) or a family built from scratch (``type`` and
    ``tokenizer``); the keys it does not declare are fields of the family's config."""

    extra_fields = True
    pretrained: str | None = None
    init: Literal["pretrained", "random"] = "pretrained"
    ignore_mismatched_sizes: bool = False
    type: str | None = None
    tokenizer: str | dict | None = None

    def check(self) -> None:
        if self.given("pretrained"):
            if self.given("type"):
                raise self.fail("give pretrained (a checkpoint) or type (from scratch), "
                                "not both")
            return
        if not self.given("type") and self.extra:
            # Without a family, no config field is known: most likely a misspelt key.
            known = [f.name for f in dataclasses.fields(self)]
            raise ConfigError(f"unknown model field {sorted(self.extra)[0]!r}; known ones are: "
                              f"{', '.join(known)} (with type, the family's config fields)")
        if not (self.given("type") and self.given("tokenizer")):
            raise ConfigError("model needs pretrained (a checkpoint folder or hub id), or type "
                              "and tokenizer (a tokenizer folder) to build one from scratch")
        cls = registry.model_class(self.type, head_architecture(self.type))
        check_known_keys(cls.config_class, self.extra, f"{self.type} config field")

    def to_dict(self) -> dict[str, Any]:
        # A checkpoint's section and a from-scratch one share no keys: keep the ones in use.
        return {k: v for k, v in super().to_dict().items() if v is not None}


def build_classifier(section: ModelSection | dict[str, Any], labels: LabelSet, *, seed: int,
                     texts: list[str] | None = None) -> tuple[PreTrainedModel, Tokenizer]:
    """The sequence classifier and its tokenizer for a ``model`` section (checked here when
    given as a mapping): a checkpoint under a new head sized to the labels, the same
    architecture with fresh weights (``init: random``), or a model of a ``type`` built from
    scratch on a given tokenizer or one trained on ``texts``."""
    from wxb.hub import load_pretrained, resolve

    if isinstance(section, dict):
        section = ModelSection.from_dict(section, "model")
    label_fields = {"num_labels": len(labels.values), "id2label": labels.id2label}
    torch.manual_seed(seed)  # the new head (or the whole random model) depends on the seed
    if section.given("pretrained"):
        folder = resolve(section.pretrained)
        tokenizer = load_tokenizer(section.tokenizer or folder)
        values = read_config_json(folder / CONFIG_NAME)
        model_type = values.get("model_type")
        cls = registry.model_class(model_type, head_architecture(model_type))
        if section.init == "pretrained":
            model = load_pretrained(cls, folder, **label_fields, **section.extra,
                                    ignore_mismatched_sizes=section.ignore_mismatched_sizes)
        else:
            model = cls(cls.config_class.from_dict({**values, **label_fields, **section.extra}))
        return model, tokenizer
    cls = registry.model_class(section.type, head_architecture(section.type))
    tokenizer = tokenizer_from_settings(section.tokenizer, texts or [])
    values = {"vocab_size": tokenizer.vocab_size, "pad_token_id": tokenizer.pad_token_id,
              **label_fields, **section.extra}
    return cls(cls.config_class.from_dict(values, strict=True)), tokenizer
