"""Recurrent text models: a sentence classifier and a sequence tagger.

    classifier  ids -> embedding -> dropout -> RNN / LSTM / GRU (uni- or bidirectional)
                    -> the last state of each direction, or max / mean over the real steps
                    -> dropout -> linear -> label scores
    tagger      ids -> embedding -> dropout -> recurrent layers -> dropout -> linear per token

In training, ``word_dropout`` first replaces random words by ``[UNK]`` (Lample et al. 2016), so
the unknown word's embedding is trained too: when every training word is in the vocabulary,
``[UNK]`` is otherwise never seen in training, and each unseen word at test time reads as noise.
With ``case_embedding_size``, each word's case class (``case_ids``: lower, Title, UPPER, ...;
``wxb.data.tagging.CASES``) is embedded and joined to its word vector (Collobert et al. 2011's
caps feature), so an unseen word still shows its capitals: most unseen words in NER are names.

The tagger can also read ELMo (Peters et al. 2018, as they do for NER): ``elmo_config`` holds
the config of a pretrained biLM (``wxb.models.elmo.ElmoBiLM``), which the tagger carries frozen as
``elmo``; its L + 1 layer representations of the words are mixed by a trainable ``ScalarMix``
(gamma * sum_j softmax(w)_j h_j) and the mix is joined to the word (and case) vector before the
recurrent layers. The biLM reads each sentence framed by <S> and </S> (``char_ids`` from
``wxb.models.elmo.batch_to_ids``), as it was trained; the two boundary positions are dropped,
so there is one vector per word. A training loop can hand the frozen layers in precomputed
(``elmo_representations``): they do not change, and computing them once saves the biLM's
forward pass at every step. The mix's layer norm is off by default (``elmo_layer_norm``):
ScalarMix normalises by one mean and variance over the whole batch, so with it a sentence's
tags would depend on the sentences batched with it (allennlp's NER model leaves it off too).

The recurrent layers are ``wxb.nn.Recurrent`` (written out; ``impl: torch`` runs the same
parameters through PyTorch's kernels). Padding is read from ``attention_mask`` (right-padded
batches): padded steps never change a state, and the backward direction starts at each
sentence's end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wxb.errors import ConfigError, DataError
from wxb.models.base import LabelledConfig, PreTrainedModel, check_token_ids
from wxb.models.elmo import ElmoBiLM, ElmoConfig, ScalarMix
from wxb.models.outputs import SequenceClassifierOutput, TokenClassifierOutput
from wxb.nn import Dropout, Recurrent
from wxb.nn.recurrent import GATES, IMPLS

POOLING = ("last", "max", "mean")


@dataclass
class RNNConfig(LabelledConfig):
    model_type = "rnn"

    vocab_size: int = 20000
    embedding_size: int = 128
    hidden_size: int = 128
    num_hidden_layers: int = 1
    cell: str = "lstm"  # rnn | lstm | gru
    bidirectional: bool = True
    pooling: str = "last"  # last | max | mean (the classifier's sentence vector)
    dropout: float = 0.3  # on the embeddings, between recurrent layers and before the head
    word_dropout: float = 0.0  # in training, a word becomes [UNK] (unk_token_id) this often
    case_embedding_size: int = 0  # > 0: case_ids (batch, seq) embedded and joined to the words
    case_vocab_size: int = 6  # the case classes (wxb.data.tagging.CASES)
    elmo_config: dict | None = None  # the tagger's frozen biLM (an ElmoConfig as a dict)
    elmo_layer_norm: bool = False  # ScalarMix's do_layer_norm (see the module docstring)
    impl: str = "wxb"  # wxb (written out) | torch (PyTorch's kernels, same parameters)
    pad_token_id: int | None = 0
    unk_token_id: int | None = 1
    num_labels: int = 2
    id2label: dict | None = None
    initializer_range: float = 0.1  # embeddings: N(0, 0.1); recurrent weights as PyTorch's

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, value, choices in (("cell", self.cell, tuple(GATES)),
                                     ("pooling", self.pooling, POOLING),
                                     ("impl", self.impl, IMPLS)):
            if value not in choices:
                raise ConfigError(f"unknown {name} {value!r}; choose one of: "
                                  f"{', '.join(choices)}")
        if self.num_labels < 1:
            raise ConfigError(f"num_labels must be at least 1, got {self.num_labels}")
        if not 0 <= self.word_dropout < 1:
            raise ConfigError(f"word_dropout is a probability in [0, 1), got {self.word_dropout}")
        if self.word_dropout and self.unk_token_id is None:
            raise ConfigError("word_dropout replaces words by [UNK]; set unk_token_id")
        # [UNK] is fed to the embeddings only when word dropout puts it in.
        check_token_ids(self, self.vocab_size, embedded=("pad_token_id",) + (
            ("unk_token_id",) if self.word_dropout else ()))
        if self.elmo_config is not None:
            if not isinstance(self.elmo_config, dict):
                raise ConfigError("elmo_config is the biLM's config as a dict (its config.json), "
                                  f"got {type(self.elmo_config).__name__}")
            ElmoConfig.from_dict(self.elmo_config)  # a bad biLM config is refused here

    @property
    def elmo_dim(self) -> int:
        """The width of each biLM layer the tagger mixes (2 * projection_dim), 0 without one."""
        return 2 * self.elmo_config.get("projection_dim", ElmoConfig.projection_dim) if (
            self.elmo_config) else 0

    @property
    def elmo_layers(self) -> int:
        """How many biLM layers the mix weighs: the token layer and each LSTM layer."""
        return 1 + self.elmo_config.get("num_hidden_layers", ElmoConfig.num_hidden_layers) if (
            self.elmo_config) else 0


class _RNNBase(PreTrainedModel):
    config_class = RNNConfig

    def __init__(self, config: RNNConfig) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size,
                                       padding_idx=config.pad_token_id)
        nn.init.normal_(self.embeddings.weight, std=config.initializer_range)
        if config.pad_token_id is not None:
            nn.init.zeros_(self.embeddings.weight[config.pad_token_id])
        self.case_embeddings = None
        if config.case_embedding_size:
            self.case_embeddings = nn.Embedding(config.case_vocab_size,
                                                config.case_embedding_size)
            nn.init.normal_(self.case_embeddings.weight, std=config.initializer_range)
        features = config.embedding_size + config.case_embedding_size + config.elmo_dim
        self.rnn = Recurrent(config.cell, features, config.hidden_size, config.num_hidden_layers,
                             bidirectional=config.bidirectional, dropout=config.dropout,
                             impl=config.impl)
        self.dropout = Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        self.classifier = nn.Linear(directions * config.hidden_size, config.num_labels)

    def parameter_components(self) -> list[tuple[str, str, str]]:
        """The count as the course derives it: (component, name pattern, formula) rows for
        ``wxb params``. V vocabulary, E embedding (word, case and the ELMo mix), H hidden, G
        gates (RNN 1, GRU 3, LSTM 4), D directions, L layers, C labels."""
        c = self.config
        v, e, h, g = c.vocab_size, c.embedding_size, c.hidden_size, GATES[c.cell]
        d, layers, labels = (2 if c.bidirectional else 1), c.num_hidden_layers, c.num_labels
        rows = [("embeddings", r"^embeddings\.", f"V*E = {v:,}*{e}")]
        if c.case_embedding_size:
            rows.append(("case embeddings", r"^case_embeddings\.",
                         f"cases*Ec = {c.case_vocab_size}*{c.case_embedding_size}"))
            e += c.case_embedding_size
        if c.elmo_config:
            rows += [("elmo (frozen biLM)", r"^elmo\.", "the pretrained biLM's, not trained"),
                     ("elmo scalar mix", r"^scalar_mix\.", f"layers+gamma = {c.elmo_layers}+1")]
            e += c.elmo_dim
        rows += [("rnn layer 1", r"^rnn\..*_l0(_reverse)?$",
                 f"D*G*(H*(E+H)+2H) = {d}*{g}*{h * (e + h) + 2 * h:,}")]
        if layers > 1:
            rows.append(("rnn layers 2+", r"^rnn\..*_l[1-9]\d*(_reverse)?$",
                         f"(L-1)*D*G*(H*(DH+H)+2H) = {layers - 1}*{d}*{g}*"
                         f"{h * (d * h + h) + 2 * h:,}"))
        rows.append(("head", r"^classifier\.", f"DH*C+C = {d * h}*{labels}+{labels}"))
        return rows

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
               case_ids: torch.Tensor | None = None, extra: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, object, torch.Tensor]:
        """(outputs (batch, seq, directions * hidden), final state, lengths (batch,)); ``extra``
        (batch, seq, features) is joined to each word's vector (the tagger's ELMo mix)."""
        if attention_mask is None:
            lengths = torch.full((input_ids.shape[0],), input_ids.shape[1])
        else:
            lengths = attention_mask.sum(dim=1).clamp(min=1)
        if self.training and self.config.word_dropout:
            # The [UNK] embedding learns what an unseen word looks like in its context.
            drop = torch.rand(input_ids.shape, device=input_ids.device) < self.config.word_dropout
            input_ids = input_ids.masked_fill(drop & (input_ids != self.config.pad_token_id),
                                              self.config.unk_token_id)
        vectors = self.embeddings(input_ids)
        if self.case_embeddings is not None:
            if case_ids is None:
                raise ConfigError("this model reads case_ids (batch, seq) next to input_ids "
                                  "(case_embedding_size > 0): make them with "
                                  "wxb.data.tagging.word_cases")
            vectors = torch.cat([vectors, self.case_embeddings(case_ids)], dim=-1)
        if extra is not None:
            vectors = torch.cat([vectors, extra.to(vectors.dtype)], dim=-1)
        out, final = self.rnn(self.dropout(vectors), lengths)
        return out, final, lengths

    def load_vectors(self, vectors: dict[str, torch.Tensor], vocab: dict[str, int]) -> int:
        """Copy pretrained word vectors (word -> vector) into the embeddings of the words the
        vocabulary (word -> id) has; returns how many were found."""
        weight = self.embeddings.weight
        found = 0
        with torch.no_grad():
            for word, index in vocab.items():
                vector = vectors.get(word)
                if vector is None or index >= weight.shape[0]:
                    continue
                if vector.shape[0] != weight.shape[1]:
                    raise ConfigError(f"the vector of {word!r} has {vector.shape[0]} "
                                      f"dimensions; embedding_size is {weight.shape[1]}")
                weight[index] = vector
                found += 1
        return found


class RNNForSequenceClassification(_RNNBase):
    """One label per text, from the sentence vector ``config.pooling`` makes."""

    def __init__(self, config: RNNConfig) -> None:
        if config.elmo_config is not None:
            raise ConfigError("elmo_config: ELMo features are the tagger's "
                              "(RNNForTokenClassification); the classifier reads words only")
        super().__init__(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                case_ids: torch.Tensor | None = None) -> SequenceClassifierOutput:
        """input_ids (batch, seq), right-padded; ``token_type_ids`` is accepted and unused
        (tokenizers of sentence pairs make it; a recurrent model reads the pair in order)."""
        out, final, lengths = self.encode(input_ids, attention_mask, case_ids)
        vector = self._pool(out, final, lengths)
        logits = self.classifier(self.dropout(vector))
        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            n = self.config.num_labels
            if bool(((labels < 0) | (labels >= n)).any()):
                bad = labels[(labels < 0) | (labels >= n)][0].item()
                raise ConfigError(f"label {bad} is outside num_labels {n} (labels are "
                                  f"0..{n - 1}); set num_labels to the number of classes")
            loss = F.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _pool(self, out: torch.Tensor, final: object, lengths: torch.Tensor) -> torch.Tensor:
        pooling = self.config.pooling
        if pooling == "last":  # the top layer's final state in each direction
            h_n = final[0] if isinstance(final, tuple) else final
            directions = 2 if self.config.bidirectional else 1
            return torch.cat(list(h_n[-directions:]), dim=-1)
        steps = torch.arange(out.shape[1], device=out.device)[None, :, None]
        real = steps < lengths.to(out.device)[:, None, None]
        if pooling == "max":
            return out.masked_fill(~real, torch.finfo(out.dtype).min).amax(dim=1)
        return (out * real).sum(dim=1) / lengths.to(out.device)[:, None]


class RNNForTokenClassification(_RNNBase):
    """One label per token (a BiLSTM tagger for NER); label -100 is ignored. With
    ``elmo_config``, a frozen biLM (``elmo``) and a trainable ``scalar_mix`` of its layers."""

    def __init__(self, config: RNNConfig) -> None:
        super().__init__(config)
        self.elmo = self.scalar_mix = None
        if config.elmo_config is not None:
            self.elmo = ElmoBiLM(ElmoConfig.from_dict(config.elmo_config))
            self.elmo.requires_grad_(False).eval()
            self.scalar_mix = ScalarMix(config.elmo_layers,
                                        do_layer_norm=config.elmo_layer_norm)

    def train(self, mode: bool = True) -> RNNForTokenClassification:
        super().train(mode)
        if self.elmo is not None:  # frozen: its dropout stays off, as when it was read
            self.elmo.eval()
        return self

    @torch.no_grad()
    def elmo_representations(self, char_ids: torch.Tensor) -> torch.Tensor:
        """The frozen biLM's layers at the words: char_ids (batch, seq + 2, chars) of the
        sentences framed by <S> and </S> (``batch_to_ids``) -> (batch, elmo_layers, seq,
        elmo_dim), the boundary positions dropped and zero past each sentence's last word."""
        if self.elmo is None:
            raise ConfigError("this tagger has no biLM (elmo_config is not set)")
        layers = self.elmo.layer_representations(char_ids)
        # Framed, word k is at position k + 1, and it is a word iff position k + 2 is real
        # (that is </S> for the last word); position 0 is <S>.
        words = (char_ids[:, 2:] > 0).any(-1)
        return torch.stack([h[:, 1:-1] for h in layers], dim=1) * words[:, None, :, None]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                case_ids: torch.Tensor | None = None, char_ids: torch.Tensor | None = None,
                elmo_representations: torch.Tensor | None = None) -> TokenClassifierOutput:
        """input_ids (batch, seq), right-padded -> logits (batch, seq, labels). With ELMo, give
        ``char_ids`` (batch, seq + 2, chars) of the same sentences framed by <S> and </S>, or
        their ``elmo_representations`` (batch, elmo_layers, seq, elmo_dim) computed before."""
        mix = None
        if self.scalar_mix is not None:
            if elmo_representations is None:
                if char_ids is None:
                    raise ConfigError("this tagger reads ELMo: give char_ids (wxb.models.elmo."
                                      "batch_to_ids of the words) or elmo_representations")
                elmo_representations = self.elmo_representations(char_ids)
            expected = (input_ids.shape[0], self.config.elmo_layers, input_ids.shape[1],
                        self.config.elmo_dim)
            if tuple(elmo_representations.shape) != expected:
                raise DataError(f"elmo_representations are {tuple(elmo_representations.shape)}"
                                f"; input_ids {tuple(input_ids.shape)} need {expected} (the "
                                "biLM's layers of the same words, without <S> and </S>)")
            mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
            mix = self.scalar_mix(elmo_representations.float().unbind(1), mask)
        out, _, _ = self.encode(input_ids, attention_mask, case_ids, mix)
        logits = self.classifier(self.dropout(out))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                   labels.reshape(-1).to(logits.device), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits)
