"""Byte-level BPE, the tokenizer of GPT-2 and Llama-3, written out to be read.

    tok = BPETokenizer.train(read_corpus("input.txt").splitlines(keepends=True), 4096)
    tok.encode("To be, or not")        # [id of "To", id of "Ġbe", id of ",", ...]
    tok.save("tok/")                   # tokenizer.json that `tokenizers`/`transformers` load

Training is the course's algorithm (Sennrich et al., 2016): start from single symbols, count
every adjacent pair over a table of word frequencies (``get_stats``), replace the most frequent
pair everywhere by a new symbol (``merge_vocab``), and repeat until the vocabulary is full.
Three things turn it into GPT-2's tokenizer and make it fast enough for real corpora:

- Words: text is first cut with GPT-2's regex (words with their leading space, numbers,
  punctuation runs, whitespace), so a merge never crosses a word boundary and every word is
  counted once, however often it occurs.
- Bytes: a word is turned into its UTF-8 bytes and each byte into one of 256 printable
  characters (``bytes_to_unicode``), so any string can be encoded and no token is unknown.
- Incremental counts: the pair counts are computed once; a merge then visits only the words
  that hold the pair (an index pair -> words) and adjusts their counts, and a heap finds the
  next most frequent pair.

Equal counts go to the pair whose symbols were created first (smaller ids). That is the order
of the ``tokenizers`` library's BpeTrainer, whose vocabulary also starts with the special
tokens and then the 256 byte symbols in code-point order, so both learn the same merges.

Encoding applies the learned merges to each word, lowest rank (earliest learned) first. The
files are Hugging Face's ``tokenizer.json`` (and GPT-2's ``vocab.json`` + ``merges.txt``), so
``tokenizers`` and ``transformers`` read what wxb writes and the other way round.
"""

from __future__ import annotations

import heapq
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar

import regex

from wxb.errors import ConfigError, DataError
from wxb.io import atomic_write_json
from wxb.tokenizers.base import Offsets, Tokenizer, read_tokenizer_config
from wxb.tokenizers.corpus import read_corpus
from wxb.tokenizers.hf import (
    TOKENIZER_FILE,
    options_from_hf_config,
    post_processor_from_template,
    template_from_post_processor,
)

# GPT-2's pre-tokenizer: contractions, a letter run or a number run or a punctuation run with at
# most one leading space, then whitespace (a space run leaves its last space to the next word).
GPT2_PATTERN = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"
                r"|\s+(?!\S)|\s+")
# GPT-2 uses one token as bos, eos and unk (byte-level BPE never needs unk).
GPT2_SPECIAL_TOKENS = {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "unk": "<|endoftext|>"}
VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"
CACHE_SIZE = 100_000  # words whose tokens are remembered; cleared when full

Pair = tuple[int, int]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte value to a printable character.

    The printable Latin-1 bytes stand for themselves; the other 68 (control bytes, space, ...)
    move, in order, to U+0100 onwards, so the space becomes ``Ġ`` and the newline ``Ċ``. BPE
    then works on strings of visible characters that a vocabulary file can show.
    """
    table = {b: chr(b) for b in [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]}
    moved = [b for b in range(256) if b not in table]
    table.update({b: chr(0x100 + i) for i, b in enumerate(moved)})
    return dict(sorted(table.items()))


BYTE_TO_SYMBOL = bytes_to_unicode()
SYMBOL_TO_BYTE = {s: b for b, s in BYTE_TO_SYMBOL.items()}
SPACE = BYTE_TO_SYMBOL[ord(" ")]  # "Ġ"
_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_surrogates(text: str) -> str:
    """Each lone surrogate (U+D800-U+DFFF) becomes U+FFFD.

    Surrogates have no UTF-8 encoding, so they cannot become bytes; one replacement character
    per surrogate keeps the text's length, so offsets still index the caller's string.
    """
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def to_symbols(word: str) -> str:
    """The byte-level form of ``word``: one symbol per UTF-8 byte ("é" -> "Ã©")."""
    # Latin-1 turns each byte into the character with the same number; translate maps those.
    return word.encode("utf-8").decode("latin-1").translate(BYTE_TO_SYMBOL)


def to_bytes(token: str) -> bytes:
    """The bytes a token stands for.

    An added token written with characters outside the byte alphabet (``"<|im start|>"``)
    stands for its own UTF-8, as in the ``tokenizers`` library's ByteLevel decoder.
    """
    try:
        return bytes(SYMBOL_TO_BYTE[s] for s in token)
    except KeyError:
        return token.encode("utf-8")


# ---------------------------------------------------------------- training: the course's BPE


def get_stats(words: list[list[int]],
              freqs: list[int]) -> tuple[Counter[Pair], defaultdict[Pair, set[int]]]:
    """Count every adjacent pair of symbols; a pair in a word that occurs n times counts n.

    Args:
        words: each distinct word as a list of symbol ids.
        freqs: how often each word occurs in the corpus.

    Returns:
        ``stats`` (pair -> count) and ``where`` (pair -> indices of the words that hold it), the
        index that lets ``merge_vocab`` visit only the words a merge changes.
    """
    stats: Counter[Pair] = Counter()
    where: defaultdict[Pair, set[int]] = defaultdict(set)
    for index, (word, freq) in enumerate(zip(words, freqs, strict=True)):
        for pair in pairwise(word):
            stats[pair] += freq
            where[pair].add(index)
    return stats, where


def merge_pair(symbols: list[str], pair: tuple[str, str], new: str) -> list[str]:
    """``symbols`` with every occurrence of ``pair``, scanning left to right, replaced by ``new``.

    In "a a a" the pair ("a", "a") is merged once, giving "aa a", as every BPE implementation
    does (``merge_vocab`` below is this same scan, with the pair counts kept up to date).
    """
    first, second = pair
    merged = []
    i, last = 0, len(symbols) - 1
    while i <= last:
        if i < last and symbols[i] == first and symbols[i + 1] == second:
            merged.append(new)
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return merged


def merge_vocab(pair: Pair, new: int, words: list[list[int]], freqs: list[int],
                stats: Counter[Pair], where: defaultdict[Pair, set[int]]) -> set[Pair]:
    """Replace ``pair`` by the symbol ``new`` in every word that holds it.

    ``stats`` and ``where`` are updated in place. Merging "x a b y" into "x N y" changes only
    the neighbours' pairs: (x, a) and (b, y) lose the word's frequency, (x, N) and (N, y) gain
    it, so the counts stay exact without a recount. ``where`` only grows; a word listed for a
    pair it no longer holds is simply found to hold no occurrence.

    Returns:
        The pairs that gained (those with ``new`` in them): the caller's heap must learn their
        counts. Every other count can only have dropped.
    """
    first, second = pair
    grown = set()
    for index in where.pop(pair):
        word, freq = words[index], freqs[index]
        merged: list[int] = []
        i, last = 0, len(word) - 1
        while i <= last:
            if i < last and word[i] == first and word[i + 1] == second:
                if merged:  # merged[-1] may be `new` itself, from an occurrence just before
                    left = merged[-1]
                    stats[left, first] -= freq
                    stats[left, new] += freq
                    where[left, new].add(index)
                    grown.add((left, new))
                if i + 2 <= last:
                    right = word[i + 2]
                    stats[second, right] -= freq
                    stats[new, right] += freq
                    where[new, right].add(index)
                    grown.add((new, right))
                merged.append(new)
                i += 2
            else:
                merged.append(word[i])
                i += 1
        words[index] = merged
    del stats[pair]
    return grown


def learn_merges(word_counts: dict[str, int], tokens: list[str], vocab_size: int, *,
                 min_frequency: int = 2, show_progress: bool = False) -> list[tuple[str, str]]:
    """Learn merges until ``tokens`` holds ``vocab_size`` entries (it is extended in place).

    Args:
        word_counts: each distinct word, in byte symbols, and how often it occurs.
        tokens: the starting vocabulary in id order: special tokens, then the byte symbols.
        vocab_size: the size to reach; training stops earlier when no pair is left.
        min_frequency: stop when the most frequent pair occurs fewer times than this.
    """
    from rich.console import Console
    from rich.progress import Progress

    ids = {token: i for i, token in enumerate(tokens)}
    words = [[ids[symbol] for symbol in word] for word in word_counts]
    freqs = list(word_counts.values())
    stats, where = get_stats(words, freqs)
    # heapq pops the smallest item, so (-count, pair) gives the highest count first and, among
    # equal counts, the pair with the smaller ids: the tie-break of the tokenizers library.
    heap = [(-count, pair) for pair, count in stats.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    with Progress(console=Console(stderr=True), disable=not show_progress,
                  transient=True) as progress:
        task = progress.add_task("BPE merges", total=vocab_size - len(tokens))
        while len(tokens) < vocab_size and heap:
            negative, pair = heapq.heappop(heap)
            count = stats.get(pair, 0)
            if count != -negative:
                # A stale entry: the pair lost occurrences since it was pushed. Every pair keeps
                # an entry at least as high as its true count, so the first exact entry popped
                # is the true maximum; this one goes back in with its true count.
                if count > 0:
                    heapq.heappush(heap, (-count, pair))
                continue
            if count < min_frequency:
                break
            first, second = tokens[pair[0]], tokens[pair[1]]
            new = ids.setdefault(first + second, len(tokens))
            if new == len(tokens):  # two merge paths can spell the same token; keep one id
                tokens.append(first + second)
                progress.advance(task)
            merges.append((first, second))
            for grown in merge_vocab(pair, new, words, freqs, stats, where):
                if stats[grown] > 0:  # (N, a) can gain and lose in one word: "a b a b"
                    heapq.heappush(heap, (-stats[grown], grown))
    return merges


# ---------------------------------------------------------------- the tokenizer


class BPETokenizer(Tokenizer):
    """Byte-level BPE with GPT-2's (or a Llama-3 style) pre-tokenizer.

    Args:
        vocab: token -> id, the special and added tokens included.
        merges: the learned merges in order; earlier ones are applied first.
        special_tokens: ``{"eos": "<|endoftext|>", ...}``; like ``added_tokens``, they are
            recognised whole wherever they appear in a text.
        added_tokens: more tokens to recognise whole (``"<|im_start|>"``, ...) with no role.
        add_prefix_space: put a space before a text that starts without one, so "Hello" at
            the start encodes like " Hello" in the middle (RoBERTa does this, GPT-2 not).
        pattern: the pre-tokenizer regex (``regex`` module syntax); GPT-2's by default.
        ignore_merges: a word that is itself in the vocabulary becomes that one token without
            merging (Llama-3's tokenizer.json sets this).
        trim_offsets: leave the spaces a token starts or ends with out of its offsets (the
            ByteLevel post-processor's option); off by default, as in GPT-2.
        keep_first_space: with ``trim_offsets``, spare one leading space of the first token
            (the post-processor's own ``add_prefix_space``, meant for the space that
            ``add_prefix_space`` adds); defaults to ``add_prefix_space``.
        **kwargs: the base ``Tokenizer`` settings (template, padding_side, chat_template, ...).

    Lone surrogates in a text are replaced by U+FFFD before encoding (they have no UTF-8 form),
    so ``decode(encode(s)) == s`` for every string ``s`` after that replacement.
    """

    kind: ClassVar[str] = "bpe"

    def __init__(self, vocab: dict[str, int], merges: Sequence[tuple[str, str]], *,
                 special_tokens: dict[str, str] | None = None,
                 added_tokens: Sequence[str] = (), add_prefix_space: bool = False,
                 pattern: str = GPT2_PATTERN, ignore_merges: bool = False,
                 trim_offsets: bool = False, keep_first_space: bool | None = None,
                 **kwargs: Any) -> None:
        super().__init__(special_tokens=special_tokens, **kwargs)
        if add_prefix_space and pattern != GPT2_PATTERN:
            raise ConfigError("add_prefix_space works with GPT-2's pattern only (tokenizer.json "
                              "cannot express it with another pattern)")
        self._vocab = dict(vocab)
        self._id_to_token = {index: token for token, index in self._vocab.items()}
        if len(self._id_to_token) != len(self._vocab):
            shared = Counter(self._vocab.values()).most_common(1)[0][0]
            raise DataError(f"two tokens of the vocabulary share the id {shared}")
        self.merges = [(a, b) for a, b in merges]
        for rank, (a, b) in enumerate(self.merges):
            for token in (a, b, a + b):
                if token not in self._vocab:
                    raise DataError(f"merge {rank} ({a!r} {b!r}) needs {token!r}, which is not "
                                    "in the vocabulary")
        # A pair listed twice keeps its later rank, as in GPT-2's encoder and tokenizers.
        self._ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        added = {*added_tokens, *self.special_tokens.values()}
        missing = sorted(added - self._vocab.keys())
        if missing:
            raise ConfigError(f"added token {missing[0]!r} is not in the vocabulary")
        self.added_tokens = sorted(added, key=self._vocab.__getitem__)
        # Longest first, so a token that starts another one cannot cut it short.
        longest_first = sorted(self.added_tokens, key=len, reverse=True)
        self._added = (regex.compile("|".join(map(regex.escape, longest_first)))
                       if longest_first else None)
        self.pattern = pattern
        try:
            self._pattern = regex.compile(pattern)
        except regex.error as err:
            raise ConfigError(f"pattern {pattern!r} does not compile ({err})") from None
        self.add_prefix_space = add_prefix_space
        self.ignore_merges = ignore_merges
        self.trim_offsets = trim_offsets
        self.keep_first_space = add_prefix_space if keep_first_space is None else keep_first_space
        self._all_bytes_known = all(s in self._vocab for s in SYMBOL_TO_BYTE)
        self._cache: dict[str, tuple[list[int], Offsets]] = {}
        self._bytes: dict[int, bytes] = {}
        self._check_special_tokens()

    # ---------------------------------------------------------------- training

    @classmethod
    def train(cls, texts: str | Iterable[str], vocab_size: int, *, min_frequency: int = 2,
              special_tokens: dict[str, str] | None = None, added_tokens: Sequence[str] = (),
              show_progress: bool = False, **options: Any) -> BPETokenizer:
        """Learn a vocabulary of ``vocab_size`` tokens from ``texts`` (one string or many).

        Ids 0, 1, ... go to the special tokens (GPT-2's ``<|endoftext|>`` as bos/eos/unk by
        default) and ``added_tokens``, then to the 256 byte symbols, then to the merges in the
        order they are learned. A pair seen fewer than ``min_frequency`` times is never merged.
        ``options`` are the constructor's (``add_prefix_space``, ``pattern``, ``template``, ...).

        As in the ``tokenizers`` library, a special token written in the training text is
        counted as ordinary text; only encoding keeps special tokens whole.
        """
        special_tokens = dict(GPT2_SPECIAL_TOKENS if special_tokens is None else special_tokens)
        tokens = list(dict.fromkeys([*special_tokens.values(), *added_tokens,
                                     *sorted(SYMBOL_TO_BYTE)]))
        if vocab_size < len(tokens):
            raise ConfigError(f"vocab_size={vocab_size} is too small: the 256 byte symbols and "
                              f"{len(tokens) - 256} special tokens need at least {len(tokens)}")
        # With no merges the tokenizer already cuts text into words as the trained one will.
        untrained = cls({token: i for i, token in enumerate(tokens)}, [],
                        special_tokens=special_tokens, added_tokens=added_tokens, **options)
        word_counts = untrained._count_words([texts] if isinstance(texts, str) else texts)
        if not word_counts:
            raise DataError("the training corpus is empty: it holds no text to learn merges from")
        merges = learn_merges(word_counts, tokens, vocab_size, min_frequency=min_frequency,
                              show_progress=show_progress)
        return cls({token: i for i, token in enumerate(tokens)}, merges,
                   special_tokens=special_tokens, added_tokens=added_tokens, **options)

    def _count_words(self, texts: Iterable[str]) -> dict[str, int]:
        """How often each word (in byte symbols) occurs in ``texts``."""
        counts: Counter[str] = Counter()
        for number, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError(f"training text {number} is a {type(text).__name__}, not a str")
            text = replace_surrogates(text)
            if self.add_prefix_space and text and not text.startswith(" "):
                text = " " + text
            counts.update(self._pattern.findall(text))
        return {to_symbols(word): count for word, count in counts.items()}

    # ---------------------------------------------------------------- encoding

    def _encode_text(self, text: str) -> tuple[list[int], Offsets]:
        text = replace_surrogates(text)
        ids: list[int] = []
        offsets: Offsets = []
        start = 0
        matches = list(self._added.finditer(text)) if self._added else []
        for match in [*matches, None]:
            end = len(text) if match is None else match.start()
            if end > start:
                self._encode_segment(text[start:end], start, ids, offsets)
            if match is not None:
                ids.append(self._vocab[match.group()])
                offsets.append(match.span())
                start = match.end()
        if self.trim_offsets:
            offsets = self._trim(ids, offsets)
        return ids, offsets

    def _encode_segment(self, segment: str, base: int, ids: list[int], offsets: Offsets) -> None:
        """Encode text that holds no added token; ``base`` is where it starts in the text."""
        prefixed = self.add_prefix_space and not segment.startswith(" ")
        if prefixed:
            segment = " " + segment
        for match in self._pattern.finditer(segment):
            word_ids, spans = self._encode_word(match.group())
            ids += word_ids
            at = match.start()
            for start, end in spans:
                start, end = at + start, at + end
                if prefixed:  # the added space has no place of its own: it sits on character 0
                    start, end = max(start - 1, 0), max(end - 1, 1)
                offsets.append((base + start, base + end))

    def _encode_word(self, word: str) -> tuple[list[int], Offsets]:
        """Ids of one pre-tokenized word and each one's character span within the word."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        symbols = to_symbols(word)
        if self.ignore_merges and symbols in self._vocab:
            tokens, kept = [symbols], range(len(symbols))
        elif self._all_bytes_known:
            tokens, kept = self._bpe(list(symbols)), range(len(symbols))
        else:  # as in tokenizers, a byte the vocabulary lacks is left out
            kept = [i for i, s in enumerate(symbols) if s in self._vocab]
            tokens = self._bpe([symbols[i] for i in kept])
        # Offsets count characters of the text: map each byte to the character it belongs to.
        owner = (range(len(word)) if word.isascii() else
                 [i for i, char in enumerate(word) for _ in char.encode("utf-8")])
        spans, cursor = [], 0
        for token in tokens:
            first, last = kept[cursor], kept[cursor + len(token) - 1]
            spans.append((owner[first], owner[last] + 1))
            cursor += len(token)
        result = [self._vocab[t] for t in tokens], spans
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[word] = result
        return result

    def _bpe(self, symbols: list[str]) -> list[str]:
        """Merge a word's symbols: the pair learned earliest first, until no pair is a merge."""
        ranks = self._ranks
        never = len(ranks)
        while len(symbols) > 1:
            pair = min(pairwise(symbols), key=lambda p: ranks.get(p, never))
            if pair not in ranks:
                break
            symbols = merge_pair(symbols, pair, pair[0] + pair[1])
        return symbols

    def _trim(self, ids: list[int], offsets: Offsets) -> Offsets:
        """Offsets without the spaces a token starts or ends with (``trim_offsets``).

        As in the tokenizers library, with ``keep_first_space`` the first token keeps a single
        leading space: the one ``add_prefix_space`` put there, which the text does not hold.
        """
        trimmed = []
        for i, (index, (start, end)) in enumerate(zip(ids, offsets, strict=True)):
            token = self._id_to_token[index]
            lead = len(token) - len(token.lstrip(SPACE))
            trail = len(token) - len(token.rstrip(SPACE))
            if lead == 1 and self.keep_first_space and (i == 0 or start == 0):
                lead = 0
            if lead:
                start = min(start + lead, end)
            if trail and end >= trail:
                end = max(end - trail, start)
            trimmed.append((start, end))
        return trimmed

    def _decode_tokens(self, ids: list[int]) -> str:
        # Ids outside the vocabulary are skipped, as the tokenizers library does (a model's
        # embedding table is often padded past the vocabulary, and sampling may pick those).
        data = bytearray()
        for index in ids:
            if index not in self._bytes:
                self._bytes[index] = to_bytes(self._id_to_token.get(index, ""))
            data += self._bytes[index]
        return data.decode("utf-8", errors="replace")

    # ---------------------------------------------------------------- vocabulary

    def token_to_id(self, token: str) -> int | None:
        return self._vocab.get(token)

    def id_to_token(self, index: int) -> str | None:
        return self._id_to_token.get(index)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    @property
    def all_special_ids(self) -> list[int]:
        """Every added token counts as special (``decode(..., skip_special_tokens=True)``)."""
        return sorted(self._vocab[t] for t in self.added_tokens)

    # ---------------------------------------------------------------- files

    def to_json(self) -> dict[str, Any]:
        """This tokenizer in Hugging Face's ``tokenizer.json`` format."""
        byte_level = {"type": "ByteLevel", "add_prefix_space": self.add_prefix_space,
                      "trim_offsets": True, "use_regex": True}
        if self.pattern == GPT2_PATTERN:
            pre_tokenizer = byte_level
        else:  # Llama-3's layout: the regex splits, then ByteLevel maps bytes only
            pre_tokenizer = {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": self.pattern}, "behavior": "Isolated",
                 "invert": False},
                {**byte_level, "use_regex": False}]}
        post_processor = {**byte_level, "add_prefix_space": self.keep_first_space,
                          "trim_offsets": self.trim_offsets}
        if self.num_special_tokens_to_add(pair=False) or self.num_special_tokens_to_add(pair=True):
            template = post_processor_from_template(self.template, self._vocab)
            post_processor = {"type": "Sequence", "processors": [post_processor, template]}
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [{"id": self._vocab[t], "content": t, "single_word": False,
                              "lstrip": False, "rstrip": False, "normalized": False,
                              "special": True}
                             for t in self.added_tokens],
            "normalizer": None,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor,
            "decoder": {**byte_level},
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": self.ignore_merges,
                      "vocab": dict(sorted(self._vocab.items(), key=lambda item: item[1])),
                      # "a b" strings: byte symbols hold no space, and every version reads these.
                      "merges": [f"{a} {b}" for a, b in self.merges]},
        }

    def _save_files(self, folder: Path) -> None:
        atomic_write_json(folder / TOKENIZER_FILE, self.to_json())

    @classmethod
    def from_tokenizer_json(cls, path: str | Path, **options: Any) -> BPETokenizer:
        """Read a byte-level BPE ``tokenizer.json`` (GPT-2 or Llama-3 layout, or one written by
        the ``tokenizers`` library); ``options`` override what the file says."""
        path = Path(path)
        spec = _read_json(path)
        try:
            settings = _settings_from_json(spec)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DataError(f"{path} is not a valid tokenizer.json ({type(err).__name__}: "
                            f"{err})") from None
        except DataError as err:
            raise DataError(f"{path}: {err}") from None
        try:
            return cls(**{**settings, **options})
        except DataError as err:
            raise DataError(f"{path}: {err}") from None

    @classmethod
    def from_vocab_merges(cls, vocab_path: str | Path, merges_path: str | Path,
                          **options: Any) -> BPETokenizer:
        """Read GPT-2's original files: ``vocab.json`` (token -> id) and ``merges.txt``."""
        vocab = _read_json(Path(vocab_path))
        lines = read_corpus(merges_path).splitlines()
        try:
            merges = [_parse_merge(line) for line in lines
                      if line and not line.startswith("#version")]
            return cls(vocab, merges, **options)
        except DataError as err:
            raise DataError(f"{merges_path}: {err}") from None

    @classmethod
    def _from_files(cls, folder: Path, options: dict[str, Any]) -> BPETokenizer:
        if "special_tokens" not in options:  # a Hugging Face folder: read its config HF's way
            config = read_tokenizer_config(folder)
            options = options_from_hf_config(config)
            options.pop("clean_up_tokenization_spaces", None)  # BPE decoding never cleans up
            if isinstance(config.get("add_prefix_space"), bool):
                options["add_prefix_space"] = config["add_prefix_space"]
        if (folder / TOKENIZER_FILE).is_file():
            return cls.from_tokenizer_json(folder / TOKENIZER_FILE, **options)
        if (folder / VOCAB_FILE).is_file() and (folder / MERGES_FILE).is_file():
            return cls.from_vocab_merges(folder / VOCAB_FILE, folder / MERGES_FILE, **options)
        raise DataError(f"{folder} holds neither {TOKENIZER_FILE} nor {VOCAB_FILE} + "
                        f"{MERGES_FILE}; save a BPETokenizer there first")


# ---------------------------------------------------------------- reading tokenizer.json


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object")
    return data


def _parse_merge(item: str | list[str]) -> tuple[str, str]:
    parts = item.split(" ") if isinstance(item, str) else item
    if len(parts) != 2 or not all(isinstance(p, str) and p for p in parts):
        raise DataError(f"merge {item!r} is not two symbols")
    return parts[0], parts[1]


def _unsupported(what: str) -> DataError:
    return DataError(f"{what} is not supported by BPETokenizer (byte-level BPE as in GPT-2 and "
                     "Llama-3); load the file with wxb.tokenizers.hf.HFTokenizer instead")


def _settings_from_json(spec: dict[str, Any]) -> dict[str, Any]:
    """BPETokenizer arguments from a parsed tokenizer.json."""
    model = spec.get("model") or {}
    if model.get("type", "BPE") != "BPE":
        raise _unsupported(f"model type {model['type']!r}")
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback",
                "fuse_unk"):
        if model.get(key):
            raise _unsupported(f"model.{key}={model[key]!r}")
    if spec.get("normalizer"):
        raise _unsupported(f"normalizer {spec['normalizer'].get('type')!r}")
    decoder = spec.get("decoder") or {}
    if decoder.get("type") != "ByteLevel":
        raise _unsupported(f"decoder {decoder.get('type')!r} (a ByteLevel decoder is needed)")
    pattern, add_prefix_space = _read_pre_tokenizer(spec.get("pre_tokenizer") or {})

    vocab = model["vocab"]
    if not isinstance(vocab, dict) or not all(type(i) is int for i in vocab.values()):
        raise DataError("model.vocab must map each token to an integer id")
    if model.get("unk_token") and not all(s in vocab for s in SYMBOL_TO_BYTE):
        raise _unsupported("an unk_token with byte symbols missing from the vocabulary")
    added = []
    for entry in spec.get("added_tokens") or []:
        content, index = entry["content"], entry["id"]
        if not entry.get("special") or any(entry.get(k) for k in ("lstrip", "rstrip",
                                                                    "single_word")):
            raise _unsupported(f"added token {content!r} (only special tokens without lstrip, "
                               "rstrip or single_word)")
        if vocab.setdefault(content, index) != index:
            raise DataError(f"added token {content!r} has id {index} but the vocabulary gives "
                            f"it {vocab[content]}")
        added.append(content)

    post = spec.get("post_processor")
    processors = (post.get("processors", []) if post and post.get("type") == "Sequence"
                  else [post] if post else [])
    # Offsets are trimmed by a ByteLevel (or RoBERTa) post-processor; it has its own flag for
    # sparing the first token's leading space.
    trimming = [p for p in processors if p.get("type") in ("ByteLevel", "RobertaProcessing")
                and p.get("trim_offsets", True)]
    return {"vocab": vocab, "merges": [_parse_merge(m) for m in model["merges"]],
            "added_tokens": added, "pattern": pattern, "add_prefix_space": add_prefix_space,
            "ignore_merges": bool(model.get("ignore_merges", False)),
            "trim_offsets": bool(trimming),
            "keep_first_space": trimming[0].get("add_prefix_space", True) if trimming else None,
            "template": template_from_post_processor(post)}


def _read_pre_tokenizer(spec: dict[str, Any]) -> tuple[str, bool]:
    """(pattern, add_prefix_space) of a GPT-2 or Llama-3 style pre-tokenizer."""
    if spec.get("type") == "ByteLevel" and spec.get("use_regex", True):
        return GPT2_PATTERN, bool(spec.get("add_prefix_space", True))
    steps = spec.get("pretokenizers", [])
    if (spec.get("type") == "Sequence" and len(steps) == 2
            and steps[0].get("type") == "Split" and "Regex" in steps[0].get("pattern", {})
            and steps[0].get("behavior") == "Isolated" and not steps[0].get("invert")
            and steps[1].get("type") == "ByteLevel" and not steps[1].get("use_regex", True)
            and not steps[1].get("add_prefix_space", True)):
        return steps[0]["pattern"]["Regex"], False
    raise _unsupported(f"pre_tokenizer {json.dumps(spec)[:120]}")
