"""BERT (Devlin et al., 2018): a stack of post-LayerNorm Transformer encoder blocks.

    ids -> word + position + segment embeddings -> LayerNorm -> dropout
        -> [x = LN(x + attn(x)); x = LN(x + ffn(x))] x num_hidden_layers -> hidden states
        -> pooler: tanh(dense(hidden state of [CLS]))

Heads on top: masked-LM (a transform, then the word embeddings transposed: tied weights, plus
a bias), next-sentence prediction, sequence classification (on the pooled [CLS]), token
classification and extractive question answering (on every position). Parameter names are
Hugging Face's: ``BertModel`` keys have no prefix, the heads' models keep theirs under
``bert.`` (``base_model_prefix``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from wxb.errors import ConfigError
from wxb.models.base import LabelledConfig, PreTrainedModel, check_token_ids
from wxb.models.outputs import (
    BaseModelOutputWithPooling,
    BertForPreTrainingOutput,
    MaskedLMOutput,
    ModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    sequence_classification_loss,
)
from wxb.nn import Dropout, activation, attention

Output = TypeVar("Output", bound=ModelOutput)


@dataclass
class BertConfig(LabelledConfig):
    model_type = "bert"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    classifier_dropout: float | None = None  # default: hidden_dropout_prob
    num_labels: int = 2
    id2label: dict | None = None  # {0: "negative", 1: "positive"}; default LABEL_0, LABEL_1...
    problem_type: str | None = None  # regression | single_label_classification | multi_label…
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by "
                              f"num_attention_heads {self.num_attention_heads}")
        if self.num_labels < 1:
            raise ConfigError(f"num_labels must be at least 1, got {self.num_labels}")
        activation(self.hidden_act)
        check_token_ids(self, self.vocab_size, embedded=("pad_token_id",))


# ----------------------------------------------------------------------------- the encoder


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings,
                                                config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                position_ids: torch.Tensor | None) -> torch.Tensor:
        seq = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(seq, device=input_ids.device)[None]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
             + self.token_type_embeddings(token_type_ids))
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, seq, self.heads, self.head_dim).transpose(1, 2)

        out, weights = attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)),
                                 mask, dropout_p=self.dropout if self.training else 0.0,
                                 need_weights=need_weights)
        return out.transpose(1, 2).reshape(batch, seq, -1), weights


class BertResidualOutput(nn.Module):
    """``LayerNorm(residual + dropout(dense(x)))``: how both sublayers end (post-LN)."""

    def __init__(self, config: BertConfig, in_features: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertResidualOutput(config, config.hidden_size)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertResidualOutput(config, config.intermediate_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attention.self(x, mask, need_weights)
        x = self.attention.output(attended, x)
        return self.output(self.intermediate(x), x), weights


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class BertPreTrainedModel(PreTrainedModel):
    config_class = BertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True

    def _init_weights(self, module: nn.Module) -> None:
        """Hugging Face's initialisation: N(0, initializer_range), zero biases, LayerNorm 1/0."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


    def parameter_components(self) -> list[tuple[str, str, str]]:
        """The parameter count as the course derives it by hand: (component, name pattern,
        formula) rows for ``wxb params``. V vocabulary, H hidden, P positions, T segment
        types, L layers, I intermediate width, C labels."""
        c = self.config
        v, h, p, t = c.vocab_size, c.hidden_size, c.max_position_embeddings, c.type_vocab_size
        layers, inner, labels = c.num_hidden_layers, c.intermediate_size, c.num_labels
        heads = {
            "BertForPreTraining": f"MLM H^2+3H+V = {h * h + 3 * h + v:,} (decoder tied to the "
                                  f"token embeddings) + NSP 2H+2 = {2 * h + 2:,}",
            "BertForMaskedLM": f"MLM H^2+3H+V = {h * h + 3 * h + v:,} (decoder tied)",
            "BertForQuestionAnswering": f"H*2+2 = {2 * h + 2:,}",
        }.get(type(self).__name__, f"H*C+C = {h * labels + labels:,}")
        return [
            ("head", r"^(cls|classifier|qa_outputs)\.", heads),
            ("pooler", r"(^|\.)pooler\.", f"H^2+H = {h * h + h:,}"),
            ("token emb.", r"word_embeddings\.", f"V*H = {v:,}*{h}"),
            ("position emb.", r"position_embeddings\.", f"P*H = {p}*{h}"),
            ("segment emb.", r"token_type_embeddings\.", f"T*H = {t}*{h}"),
            ("LayerNorm", r"LayerNorm\.", f"2H*(2L+1) = {2 * h}*{2 * layers + 1}"),
            ("attention", r"\.attention\.", f"L*(4H^2+4H) = {layers}*{4 * h * h + 4 * h:,}"),
            ("feed-forward", r"\.(intermediate|output)\.dense\.",
             f"L*(2HI+I+H) = {layers}*{2 * h * inner + inner + h:,}"),
        ]


class BertModel(BertPreTrainedModel):
    """The encoder; ``add_pooling_layer=False`` leaves out the pooler (the token-level heads
    and masked LM do not use it)."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.apply(self._init_weights)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False) -> BaseModelOutputWithPooling:
        """input_ids (batch, seq); attention_mask (batch, seq), 1 for tokens, 0 for padding;
        token_type_ids (batch, seq), the segment (0 first sentence, 1 second)."""
        seq, limit = input_ids.shape[1], self.config.max_position_embeddings
        if seq > limit:
            raise ConfigError(f"{seq} tokens exceed the model's {limit} positions; truncate "
                              "the input (tokenizer truncation=True, max_length=...)")
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        # Every query may attend to every real token: a (batch, 1, 1, seq) boolean mask.
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask[:, None, None, :].bool()
        hidden, weights = [], []
        for layer in self.encoder.layer:
            hidden.append(x)
            x, w = self.run_layer(layer, x, mask, output_attentions)
            weights.append(w)
        hidden.append(x)
        return BaseModelOutputWithPooling(
            last_hidden_state=x, pooler_output=self.pooler(x) if self.pooler else None,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(weights) if output_attentions else None)


# ----------------------------------------------------------------------------- the heads


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """Hidden states -> vocabulary logits; the decoder weight is the word embeddings'.

    The output bias is ``bias``, and ``decoder.bias`` is the same tensor (both names occur in
    Hugging Face checkpoints).
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.decoder.bias = self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))


class BertMLMHead(nn.Module):
    """``cls.predictions`` alone (BertForMaskedLM) or with ``cls.seq_relationship`` (NSP)."""

    def __init__(self, config: BertConfig, nsp: bool) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2) if nsp else None


class _BertWithHead(BertPreTrainedModel):
    """A BertModel under ``bert.`` and a head; ties the MLM decoder when there is one."""

    pooling = True
    # Masked-LM heads: with labels, compute the vocabulary logits only where a label is given
    # (ModernBERT's option of the same name). The loss is the same; the head, the largest
    # matmul of pretraining, costs ~15% of the dense one; ``logits`` are (n_labelled, vocab).
    sparse_prediction = False

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=self.pooling)

    def _mlm(self, hidden: torch.Tensor, labels: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The MLM logits and the labels they line up with (see ``sparse_prediction``)."""
        if self.sparse_prediction and labels is not None:
            keep = labels.to(hidden.device) != -100
            return self.cls.predictions(hidden[keep]), labels.to(hidden.device)[keep]
        return self.cls.predictions(hidden), labels

    def _finish(self) -> None:
        self.apply(self._init_weights)
        head = getattr(self, "cls", None)
        if head is not None and self.config.tie_word_embeddings:
            head.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def _add_classifier(self) -> None:
        """dropout -> ``classifier`` (hidden -> num_labels), for the classification heads."""
        config = self.config
        self.dropout = Dropout(config.classifier_dropout if config.classifier_dropout
                                  is not None else config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)


def _output(cls: type[Output], encoded: BaseModelOutputWithPooling,
            **fields: torch.Tensor | None) -> Output:
    """A head's output with the encoder's hidden states and attentions passed on."""
    return cls(**fields, hidden_states=encoded.hidden_states, attentions=encoded.attentions)


def _token_loss(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    """Cross-entropy over every position (batch, seq, classes) or (positions, classes); label
    -100 is ignored."""
    if labels is None:
        return None
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                           labels.reshape(-1).to(logits.device), ignore_index=-100)


class BertForPreTraining(_BertWithHead):
    """Masked LM + next-sentence prediction; ``labels`` (batch, seq) with -100 on unmasked
    positions, ``next_sentence_label`` (batch,) 0 = B follows A, 1 = B is random."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.cls = BertMLMHead(config, nsp=True)
        self._finish()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, next_sentence_label=None, output_attentions=False,
                output_hidden_states=False) -> BertForPreTrainingOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids,
                        output_attentions, output_hidden_states)
        logits, labels = self._mlm(out.last_hidden_state, labels)
        nsp = self.cls.seq_relationship(out.pooler_output)
        loss = None
        if labels is not None and next_sentence_label is not None:
            loss = _token_loss(logits, labels) + F.cross_entropy(
                nsp.float(), next_sentence_label.to(nsp.device))
        return _output(BertForPreTrainingOutput, out, loss=loss, prediction_logits=logits,
                       seq_relationship_logits=nsp)


class BertForMaskedLM(_BertWithHead):
    pooling = False

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.cls = BertMLMHead(config, nsp=False)
        self._finish()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_attentions=False,
                output_hidden_states=False) -> MaskedLMOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids,
                        output_attentions, output_hidden_states)
        logits, labels = self._mlm(out.last_hidden_state, labels)
        return _output(MaskedLMOutput, out, loss=_token_loss(logits, labels), logits=logits)


class BertForSequenceClassification(_BertWithHead):
    """The pooled [CLS] -> dropout -> ``classifier``; the loss follows ``problem_type`` as in
    Hugging Face (regression for one label, cross-entropy for class ids, BCE for multi-hot)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self._add_classifier()
        self._finish()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_attentions=False,
                output_hidden_states=False) -> SequenceClassifierOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids,
                        output_attentions, output_hidden_states)
        logits = self.classifier(self.dropout(out.pooler_output))
        loss = None if labels is None else sequence_classification_loss(
            logits, labels.to(logits.device), self.config.num_labels, self.config.problem_type)
        return _output(SequenceClassifierOutput, out, loss=loss, logits=logits)


class BertForTokenClassification(_BertWithHead):
    """Every position's hidden state -> dropout -> ``classifier``; label -100 is ignored."""

    pooling = False

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self._add_classifier()
        self._finish()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_attentions=False,
                output_hidden_states=False) -> TokenClassifierOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids,
                        output_attentions, output_hidden_states)
        logits = self.classifier(self.dropout(out.last_hidden_state))
        return _output(TokenClassifierOutput, out, loss=_token_loss(logits, labels),
                       logits=logits)


class BertForQuestionAnswering(_BertWithHead):
    """``qa_outputs`` gives each position a start and an end score; the loss is the mean of
    the two cross-entropies. Answer positions outside the sequence are ignored, as in Hugging
    Face (clamped to the length, which is the ignore index)."""

    pooling = False

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)  # 2: start, end
        self._finish()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None, output_attentions=False,
                output_hidden_states=False) -> QuestionAnsweringModelOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids,
                        output_attentions, output_hidden_states)
        start, end = self.qa_outputs(out.last_hidden_state).split(1, dim=-1)
        start, end = start.squeeze(-1), end.squeeze(-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            seq = start.shape[1]
            losses = [F.cross_entropy(logits.float(),
                                      positions.to(logits.device).clamp(0, seq),
                                      ignore_index=seq)
                      for logits, positions in ((start, start_positions),
                                                (end, end_positions))]
            loss = (losses[0] + losses[1]) / 2
        return _output(QuestionAnsweringModelOutput, out, loss=loss, start_logits=start,
                       end_logits=end)
