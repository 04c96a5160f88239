"""ELMo's bidirectional language model (Peters et al. 2018, "Deep contextualized word
representations"), written out and small enough to pretrain on a laptop.

    words -> characters: UTF-8 bytes plus 5 markers, max_characters_per_token per word
          -> char embedding (16) -> convolutions of several widths, max over the word, relu
          -> highway layers -> linear projection                  = x_k, the token vector
    forward LM   2 LSTM layers left to right, each followed by a projection; layer 2 adds
                 its input (the residual connection)
    backward LM  the same shapes right to left, with weights of its own
          -> one softmax over the word vocabulary, shared by the two directions
    loss = (CE(forward predicts word k+1) + CE(backward predicts word k-1)) / 2

What a downstream model reads are the L + 1 = 3 layers (``layer_representations``), each
(batch, seq, 2 * projection_dim): layer 0 is [x_k; x_k] (the token vector twice, to the width
of the others), layer j the joined states [forward_j; backward_j]. ``ScalarMix`` mixes them:
gamma * sum_j s_j h_j with softmax-normalised s_j.

Characters are ELMo's: a word is [begin-of-word, its UTF-8 bytes (at most max - 2), end-of-word]
padded with a padding character to ``max_characters_per_token``; <S> and </S> are one marker
character of their own between the same two; every id is shifted by one so that 0 is a word
position that is padding (its characters are all 0). Bytes make any script work: a Chinese
character is three of them.

Choices where this model departs from ELMo (and why):

- The LSTMs are ``wxb.nn.Recurrent`` layers, one per layer and direction: ELMo's two stacks
  are separate (backward layer 2 reads backward layer 1 only), which a bidirectional
  ``Recurrent`` is not (it joins both directions before its next layer). The backward LM runs
  the same forward loop on each sentence reversed within its own length.
- ELMo's LSTMs are LSTMP cells: the 4096-d state is projected to 512 inside the recurrence and
  the projection is fed back. wxb's LSTM has no projection, so here the projection is a linear
  layer on each layer's output and the recurrence carries the whole ``hidden_size`` state;
  with ``hidden_size`` small that is cheap. ELMo's clipping of the cell and the projection
  (to +-3) is left out.
- Dropout (``dropout``) falls on each LSTM layer's input and on the top layer before the
  softmax, as in bilm-tf; the representations for downstream use are read in eval mode.
- The softmax (and the character encoder) is shared by both directions, as the paper ties
  them; the LSTMs are not.

The word vocabulary is not part of the weights: ``ElmoVocabulary`` is ``vocab.txt`` in the
model folder, one word per line with <S>, </S>, <UNK> first (bilm-tf's vocabulary file).
``ElmoBiLM.save_pretrained`` writes it and ``ElmoBiLM.from_pretrained`` reads it back into
``model.vocabulary``; ``wxb.from_pretrained`` builds the model alone, and
``ElmoVocabulary.load(folder)`` reads the words then.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wxb.errors import ConfigError, DataError
from wxb.io import atomic_write_text
from wxb.models.base import Config, PreTrainedModel
from wxb.models.outputs import ModelOutput
from wxb.nn.dropout import dropout
from wxb.nn.recurrent import IMPLS, Recurrent

# Character ids before the shift by one: 0-255 are bytes, then five markers.
BOS_CHAR, EOS_CHAR, BOW_CHAR, EOW_CHAR, PAD_CHAR = 256, 257, 258, 259, 260
CHAR_VOCAB_SIZE = 262  # 256 bytes + 5 markers + 0, the id of a padded word position
BOS, EOS, UNK = "<S>", "</S>", "<UNK>"
SPECIALS = (BOS, EOS, UNK)
VOCAB_NAME = "vocab.txt"
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}
ELMO_FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]


@dataclass
class ElmoConfig(Config):
    """The biLM's sizes; the defaults are the original ELMo's (but ``vocab_size``: its
    softmax had 793k words). Without the softmax ELMo has 93.6M parameters and this model
    329M at these sizes: its recurrence carries the 4096-d state, not a 512-d projection."""

    model_type = "elmo"

    vocab_size: int = 10000  # words of the softmax: <S>, </S>, <UNK>, then the corpus's
    max_characters_per_token: int = 50
    char_embedding_dim: int = 16
    filters: list[list[int]] = dataclasses.field(
        default_factory=lambda: [list(f) for f in ELMO_FILTERS])  # [width, count] pairs
    n_highway: int = 2
    activation: str = "relu"  # after the max over the word: relu | tanh
    projection_dim: int = 512  # the token vector and each LSTM layer's output
    hidden_size: int = 4096  # each LSTM's state (ELMo's "dim")
    num_hidden_layers: int = 2
    use_skip_connections: bool = True  # layer j > 1 adds its input to its output
    dropout: float = 0.1
    impl: str = "wxb"  # wxb (written out) | torch (PyTorch's kernels, same parameters)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("vocab_size", "char_embedding_dim", "projection_dim", "hidden_size",
                     "num_hidden_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ElmoConfig.{name} must be at least 1, got "
                                  f"{getattr(self, name)}")
        if self.n_highway < 0:
            raise ConfigError(f"ElmoConfig.n_highway must be 0 or more, got {self.n_highway}")
        if self.max_characters_per_token < 3:
            raise ConfigError("ElmoConfig.max_characters_per_token must be at least 3 (the "
                              "begin and end of word markers and one character), got "
                              f"{self.max_characters_per_token}")
        if not self.filters or not all(
                len(f) == 2 and 1 <= f[0] <= self.max_characters_per_token and f[1] >= 1
                for f in self.filters):
            raise ConfigError(f"ElmoConfig.filters must be [width, count] pairs with 1 <= width "
                              f"<= max_characters_per_token ({self.max_characters_per_token}) "
                              f"and count >= 1, e.g. [[1, 32], [2, 64]]; got {self.filters}")
        for name, value, choices in (("activation", self.activation, tuple(ACTIVATIONS)),
                                     ("impl", self.impl, IMPLS)):
            if value not in choices:
                raise ConfigError(f"unknown ElmoConfig.{name} {value!r}; choose one of: "
                                  f"{', '.join(choices)}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"ElmoConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.vocab_size < len(SPECIALS):
            raise ConfigError(f"ElmoConfig.vocab_size must hold at least {', '.join(SPECIALS)}"
                              f", got {self.vocab_size}")


# ----------------------------------------------------------------------------- characters


@functools.lru_cache(maxsize=1 << 18)
def word_char_ids(word: str, max_characters: int = 50) -> tuple[int, ...]:
    """The ``max_characters`` character ids of one word (see the module docstring):
    ``"ab"`` -> (259, 98, 99, 260, 261, 261, ...)."""
    if word == BOS:
        body = [BOS_CHAR]
    elif word == EOS:
        body = [EOS_CHAR]
    else:  # a longer word keeps its first bytes, as ELMo does
        body = list(word.encode("utf-8"))[:max_characters - 2]
    ids = [BOW_CHAR, *body, EOW_CHAR] + [PAD_CHAR] * (max_characters - len(body) - 2)
    return tuple(i + 1 for i in ids)


def sentence_char_ids(words: Sequence[str], max_characters: int = 50) -> np.ndarray:
    """(len(words), max_characters) int16 character ids of one sentence."""
    return np.array([word_char_ids(w, max_characters) for w in words],
                    dtype=np.int16).reshape(len(words), max_characters)


def batch_to_ids(sentences: Sequence[Sequence[str]], max_characters: int = 50, *,
                 add_boundaries: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``char_ids`` (batch, seq, max_characters) int64 and ``attention_mask`` (batch, seq) of
    right-padded sentences of words; ``add_boundaries`` puts <S> and </S> around each, as the
    biLM was trained."""
    if add_boundaries:
        sentences = [[BOS, *s, EOS] for s in sentences]
    if not sentences or not all(sentences):
        raise DataError("batch_to_ids needs at least one sentence and no empty sentence")
    seq = max(map(len, sentences))
    char_ids = torch.zeros(len(sentences), seq, max_characters, dtype=torch.long)
    mask = torch.zeros(len(sentences), seq, dtype=torch.long)
    for i, words in enumerate(sentences):
        char_ids[i, :len(words)] = torch.from_numpy(sentence_char_ids(words, max_characters))
        mask[i, :len(words)] = 1
    return char_ids, mask


@dataclass
class ElmoVocabulary:
    """The softmax's words: <S>, </S>, <UNK>, then the corpus's, in id order; saved as
    ``vocab.txt`` (one word per line) beside the weights."""

    words: list[str]
    index: dict[str, int] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        if tuple(self.words[:len(SPECIALS)]) != SPECIALS:
            raise DataError(f"an ELMo vocabulary starts with {', '.join(SPECIALS)}; got "
                            f"{self.words[:len(SPECIALS)]}")
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise DataError("an ELMo vocabulary holds each word once; this one repeats words")

    @classmethod
    def from_words(cls, words: Sequence[str]) -> ElmoVocabulary:
        """<S>, </S>, <UNK> and then ``words`` (e.g. ``wxb.data.corpus.Vocabulary.words``)."""
        return cls([*SPECIALS, *(w for w in words if w not in SPECIALS)])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, words: Sequence[str], *, add_boundaries: bool = True) -> np.ndarray:
        """The ids of a sentence (int64), <UNK> for a word outside the vocabulary."""
        unk, index = self.index[UNK], self.index
        if add_boundaries:
            words = [BOS, *words, EOS]
        return np.array([index.get(w, unk) for w in words], dtype=np.int64)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / VOCAB_NAME
        if any("\n" in w or "\r" in w for w in self.words):
            raise DataError(f"{path}: a word holds a line break and cannot be one line of the "
                            "vocabulary file")
        atomic_write_text(path, "".join(w + "\n" for w in self.words))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> ElmoVocabulary:
        path = Path(folder) / VOCAB_NAME
        if not path.is_file():
            raise DataError(f"{path} does not exist; an ELMo folder keeps its words there "
                            "(ElmoBiLM.save_pretrained writes it when model.vocabulary is set)")
        return cls(path.read_text(encoding="utf-8").split("\n")[:-1])


# ----------------------------------------------------------------------------- layers


class Highway(nn.Module):
    """Highway layers (Srivastava et al. 2015): y = g * relu(W_h x) + (1 - g) * x with the
    transform gate g = sigmoid(W_g x), per layer; (..., dim) -> (..., dim).

    The gate bias starts at -1, so each layer starts by carrying about 73% of its input
    (1 - sigmoid(-1)): close to the identity, the character features reach the projection
    unchanged and the gradients reach the convolutions undiminished, while the layers learn
    what to transform. This is allennlp's start exactly: it writes the gate on the other
    side, y = c * x + (1 - c) * f(x) with c = 1 - g, and sets the bias of c to +1.
    """

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))
        self.gates = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))
        for gate in self.gates:
            nn.init.constant_(gate.bias, -1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for transform, gate in zip(self.transforms, self.gates, strict=True):
            g = torch.sigmoid(gate(x))
            x = g * torch.relu(transform(x)) + (1 - g) * x
        return x


class ElmoCharacterEncoder(nn.Module):
    """Words as characters -> token vectors: char_ids (batch, seq, chars) and the word mask
    (batch, seq) -> (batch, seq, projection_dim), zero at padded positions."""

    def __init__(self, config: ElmoConfig) -> None:
        super().__init__()
        self.char_embeddings = nn.Embedding(CHAR_VOCAB_SIZE, config.char_embedding_dim,
                                            padding_idx=0)
        self.convolutions = nn.ModuleList(nn.Conv1d(config.char_embedding_dim, count, width)
                                          for width, count in config.filters)
        self.activation = ACTIVATIONS[config.activation]
        features = sum(count for _, count in config.filters)
        self.highway = Highway(features, config.n_highway)
        self.projection = nn.Linear(features, config.projection_dim)
        self.projection_dim = config.projection_dim

    def forward(self, char_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        words = char_ids[mask.bool()]  # (words, chars): only the real positions are encoded
        x = self.char_embeddings(words).transpose(1, 2)  # (words, char_dim, chars)
        # Each filter's best match anywhere in the word: a feature per filter, any word length.
        features = torch.cat([self.activation(conv(x).amax(dim=-1))
                              for conv in self.convolutions], dim=-1)
        tokens = self.projection(self.highway(features))
        out = tokens.new_zeros(*mask.shape, self.projection_dim)
        out[mask.bool()] = tokens
        return out


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence of (batch, seq, dim) reversed within its length (the padding stays at the
    end); its own inverse."""
    steps = torch.arange(x.shape[1], device=x.device)
    n = lengths.to(x.device)[:, None]
    index = torch.where(steps < n, n - 1 - steps, steps)
    return x.gather(1, index[..., None].expand_as(x))


class ElmoLstm(nn.Module):
    """The two LMs' LSTM stacks: token vectors (batch, seq, projection_dim) and the mask ->
    one (forward, backward) pair per layer, each (batch, seq, projection_dim), zero at padded
    positions; backward[:, k] has read the words from the sentence's end down to k."""

    def __init__(self, config: ElmoConfig) -> None:
        super().__init__()
        p, h, layers = config.projection_dim, config.hidden_size, config.num_hidden_layers

        def lstms() -> nn.ModuleList:
            return nn.ModuleList(Recurrent("lstm", p, h, impl=config.impl)
                                 for _ in range(layers))

        def projections() -> nn.ModuleList:
            return nn.ModuleList(nn.Linear(h, p) for _ in range(layers))

        self.forward_layers, self.backward_layers = lstms(), lstms()
        self.forward_projections, self.backward_projections = projections(), projections()
        self.dropout = config.dropout
        self.use_skip_connections = config.use_skip_connections

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        lengths = mask.sum(dim=1).cpu()
        keep = mask[..., None].to(tokens.dtype)
        # The backward LM is a forward LM over each sentence reversed (within its length).
        forward, backward = tokens, reverse_padded(tokens, lengths)
        layers = []
        for j in range(len(self.forward_layers)):
            f = self._layer(self.forward_layers[j], self.forward_projections[j], forward,
                            lengths, keep)
            b = self._layer(self.backward_layers[j], self.backward_projections[j], backward,
                            lengths, keep)
            if j > 0 and self.use_skip_connections:
                f, b = f + forward, b + backward
            forward, backward = f, b
            layers.append((forward, reverse_padded(backward, lengths)))
        return layers

    def _layer(self, lstm: Recurrent, projection: nn.Linear, x: torch.Tensor,
               lengths: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        out, _ = lstm(dropout(x, self.dropout, self.training), lengths)
        return projection(out) * keep  # padded steps stay zero (the bias would not)


class ScalarMix(nn.Module):
    """ELMo's task-specific mix of the biLM's layers (allennlp's ``ScalarMix``):
    gamma * sum_j s_j h_j, with s = softmax(w) over ``num_layers`` learned scalars w (zeros at
    the start: an even mix) and a learned scale gamma (1 at the start).

    With ``do_layer_norm`` each layer is first normalised by the mean and the variance of all
    its values at the unmasked positions of the batch (one mean and one variance per layer,
    as allennlp does), which needs the mask.
    """

    def __init__(self, num_layers: int, *, do_layer_norm: bool = False,
                 initial_scalar_parameters: Sequence[float] | None = None,
                 trainable: bool = True) -> None:
        super().__init__()
        initial = [0.0] * num_layers if initial_scalar_parameters is None else list(
            initial_scalar_parameters)
        if len(initial) != num_layers:
            raise ConfigError(f"ScalarMix: {len(initial)} initial_scalar_parameters for "
                              f"{num_layers} layers; give one per layer")
        self.num_layers, self.do_layer_norm = num_layers, do_layer_norm
        self.scalar_parameters = nn.Parameter(torch.tensor(initial), requires_grad=trainable)
        self.gamma = nn.Parameter(torch.tensor(1.0), requires_grad=trainable)

    def forward(self, layers: Sequence[torch.Tensor],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """layers: ``num_layers`` tensors (batch, seq, dim); mask (batch, seq) -> the mix,
        (batch, seq, dim)."""
        if len(layers) != self.num_layers:
            raise ConfigError(f"ScalarMix of {self.num_layers} layers was given {len(layers)}")
        if self.do_layer_norm and mask is None:
            raise ConfigError("ScalarMix with do_layer_norm needs the mask of the positions")
        weights = torch.softmax(self.scalar_parameters, dim=0)
        mixed = 0
        for s, h in zip(weights, layers, strict=True):
            mixed = mixed + s * (self._normalise(h, mask) if self.do_layer_norm else h)
        return self.gamma * mixed

    @staticmethod
    def _normalise(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[..., None].to(h.dtype)
        count = keep.sum() * h.shape[-1]
        mean = (h * keep).sum() / count
        variance = (((h - mean) * keep) ** 2).sum() / count
        return (h - mean) / torch.sqrt(variance + 1e-12)


# ----------------------------------------------------------------------------- the model


@dataclass
class BiLMOutput(ModelOutput):
    """``loss`` (the mean of the two directions' cross-entropies, when labels are given),
    each direction's loss, the logits (batch, seq, vocab_size) of each direction, and with
    ``output_hidden_states`` the L + 1 layer representations (batch, seq, 2 * projection_dim)."""

    loss: torch.Tensor | None = None
    logits_forward: torch.Tensor | None = None
    logits_backward: torch.Tensor | None = None
    loss_forward: torch.Tensor | None = None
    loss_backward: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class ElmoBiLM(PreTrainedModel):
    """The biLM: ``forward(char_ids, attention_mask, labels_forward, labels_backward)``.

    char_ids (batch, seq, max_characters_per_token) from ``batch_to_ids``; attention_mask
    (batch, seq), right-padded (default: the positions whose characters are not all 0);
    labels_forward[k] the id of word k+1, labels_backward[k] that of word k-1, -100 where
    there is none (see ``wxb.tasks.bilm.train.collate_bilm``).
    """

    config_class = ElmoConfig
    main_input_name = "char_ids"

    def __init__(self, config: ElmoConfig, vocabulary: ElmoVocabulary | None = None) -> None:
        super().__init__(config)
        self.char_encoder = ElmoCharacterEncoder(config)
        self.lstm = ElmoLstm(config)
        self.softmax = nn.Linear(config.projection_dim, config.vocab_size)
        self.vocabulary = None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary)

    def set_vocabulary(self, vocabulary: ElmoVocabulary) -> None:
        if len(vocabulary) != self.config.vocab_size:
            raise ConfigError(f"the vocabulary has {len(vocabulary)} words and the softmax "
                              f"{self.config.vocab_size}; build the config with vocab_size="
                              f"{len(vocabulary)}")
        self.vocabulary = vocabulary

    def get_input_embeddings(self) -> nn.Module:
        return self.char_encoder.char_embeddings

    def _mask(self, char_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if char_ids.dim() != 3 or char_ids.shape[-1] != self.config.max_characters_per_token:
            chars = self.config.max_characters_per_token
            raise DataError(f"char_ids must be (batch, seq, {chars}) character ids "
                            f"(batch_to_ids), got {tuple(char_ids.shape)}")
        mask = (char_ids > 0).any(-1) if attention_mask is None else attention_mask.bool()
        steps = torch.arange(mask.shape[1], device=mask.device)
        if bool((mask.sum(1) < 1).any()) or not torch.equal(
                mask, steps < mask.sum(1, keepdim=True)):
            raise DataError("attention_mask must mark each sentence's words from the start "
                            "(right padding), with at least one word per sentence")
        return mask

    def _layers(self, char_ids: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        tokens = self.char_encoder(char_ids, mask)
        return tokens, self.lstm(tokens, mask)

    @staticmethod
    def _representations(tokens: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]
                         ) -> tuple[torch.Tensor, ...]:
        return (torch.cat([tokens, tokens], dim=-1),
                *(torch.cat([f, b], dim=-1) for f, b in layers))

    def layer_representations(self, char_ids: torch.Tensor,
                              attention_mask: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, ...]:
        """The L + 1 layers, each (batch, seq, 2 * projection_dim): [x; x], then
        [forward_j; backward_j]; zero at padded positions. Read them in eval mode. From
        ``batch_to_ids(sentences)`` position 0 is <S> and position n + 1 is </S>: a word's
        vectors are at 1 ... n, as the biLM was trained."""
        tokens, layers = self._layers(char_ids, self._mask(char_ids, attention_mask))
        return self._representations(tokens, layers)

    def forward(self, char_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels_forward: torch.Tensor | None = None,
                labels_backward: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> BiLMOutput:
        tokens, layers = self._layers(char_ids, self._mask(char_ids, attention_mask))
        top_forward, top_backward = layers[-1]
        p = self.config.dropout
        logits_forward = self.softmax(dropout(top_forward, p, self.training))
        logits_backward = self.softmax(dropout(top_backward, p, self.training))
        loss = loss_forward = loss_backward = None
        if labels_forward is not None and labels_backward is not None:
            loss_forward = F.cross_entropy(logits_forward.flatten(0, 1).float(),
                                           labels_forward.flatten(), ignore_index=-100)
            loss_backward = F.cross_entropy(logits_backward.flatten(0, 1).float(),
                                            labels_backward.flatten(), ignore_index=-100)
            loss = (loss_forward + loss_backward) / 2
        elif labels_forward is not None or labels_backward is not None:
            raise DataError("give both labels_forward and labels_backward (the loss is the "
                            "mean of the two directions'), or neither")
        return BiLMOutput(
            loss=loss, logits_forward=logits_forward, logits_backward=logits_backward,
            loss_forward=loss_forward, loss_backward=loss_backward,
            hidden_states=self._representations(tokens, layers) if output_hidden_states
            else None)

    def save_pretrained(self, folder: str | Path) -> Path:
        """config.json, model.safetensors and, when the model has one, vocab.txt."""
        folder = super().save_pretrained(folder)
        if self.vocabulary is not None:
            self.vocabulary.save(folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, dtype: torch.dtype | None = None,
                        **kwargs: Any) -> ElmoBiLM:
        """The model of a folder, with ``model.vocabulary`` from its vocab.txt if it has one."""
        model = super().from_pretrained(folder, dtype, **kwargs)
        if (Path(folder) / VOCAB_NAME).is_file():
            model.set_vocabulary(ElmoVocabulary.load(folder))
        return model
