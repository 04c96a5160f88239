"""model_type -> (Config class, model classes); what from_pretrained and `wxb train` look up.

Families register by module path so importing the registry does not import every model.
"""

from __future__ import annotations

import importlib

from wxb.errors import ConfigError
from wxb.models.base import Config, PreTrainedModel

# model_type: (module, config class, model classes; the first is the default)
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mlp": ("wxb.models.mlp", "MLPConfig", ("MLPForClassification",)),
    "cnn": ("wxb.models.cnn", "CNNConfig", ("CNNForImageClassification",)),
    "gpt2": ("wxb.models.gpt2", "GPT2Config", ("GPT2LMHeadModel", "GPT2Model",
                                              "GPT2ForSequenceClassification")),
    "llama": ("wxb.models.llama", "LlamaConfig", ("LlamaForCausalLM", "LlamaModel",
                                                "LlamaForSequenceClassification")),
    "rnn": ("wxb.models.rnn", "RNNConfig", ("RNNForSequenceClassification",
                                            "RNNForTokenClassification")),
    "seq2seq": ("wxb.models.seq2seq", "Seq2SeqConfig", ("Seq2Seq",)),
    # The 2017 Transformer, in Hugging Face's layout for it (Marian); "transformer" says so.
    "marian": ("wxb.models.transformer", "TransformerConfig", ("MarianMTModel", "MarianModel")),
    "transformer": ("wxb.models.transformer", "TransformerConfig", ("MarianMTModel",
                                                                    "MarianModel")),
    "t5": ("wxb.models.t5", "T5Config", ("T5ForConditionalGeneration", "T5Model",
                                        "T5EncoderModel")),
    "whisper": ("wxb.models.whisper", "WhisperConfig", ("WhisperForConditionalGeneration",
                                                      "WhisperModel")),
    "bert": ("wxb.models.bert", "BertConfig", (
        "BertModel", "BertForPreTraining", "BertForMaskedLM", "BertForSequenceClassification",
        "BertForTokenClassification", "BertForQuestionAnswering")),
    # ELMo's biLM (Peters et al. 2018); its words are vocab.txt beside the weights.
    "elmo": ("wxb.models.elmo", "ElmoConfig", ("ElmoBiLM",)),
}


def _family(model_type: str):
    if model_type not in FAMILIES:
        raise ConfigError(f"unknown model type {model_type!r}; known: {', '.join(FAMILIES)}")
    module_name, config_name, class_names = FAMILIES[model_type]
    return importlib.import_module(module_name), config_name, class_names


def config_class(model_type: str) -> type[Config]:
    module, config_name, _ = _family(model_type)
    return getattr(module, config_name)


def model_class(model_type: str, architecture: str | None = None) -> type[PreTrainedModel]:
    module, _, class_names = _family(model_type)
    name = architecture or class_names[0]
    if name not in class_names:
        raise ConfigError(f"{model_type} has no architecture {name!r}; "
                          f"choose one of: {', '.join(class_names)}")
    return getattr(module, name)
