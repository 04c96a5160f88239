"""BERT's WordPiece tokenizer, written out: basic tokenization, then greedy longest-match-first.

It produces what Hugging Face's ``BertTokenizerFast`` produces (the ``tokenizers`` library's
BertNormalizer + BertPreTokenizer + WordPiece model + WordPiece decoder), offsets included:

1. Special tokens written in the text (``[MASK]``, ``[SEP]``, ...) are cut out first, exactly as
   typed, before any normalization.
2. Normalize: drop control and format characters (keeping tab, newline and carriage return, which
   become spaces, like every other space), optionally decompose (NFD) and drop the
   non-spacing marks ("café" -> "cafe"), and optionally lower-case each character.
3. Pre-tokenize: split on spaces; every punctuation character and every CJK ideograph becomes a
   word of its own (Chinese has no spaces, so BERT reads it character by character).
4. WordPiece: cut each word into the longest vocabulary entry from its start, then the longest
   ``##``-entry from where that one ended, and so on. A word that cannot be cut this way, or is
   longer than ``max_input_chars_per_word``, becomes one ``[UNK]``.

Offsets point into the text the caller gave, although normalization changes lengths ("é"
loses its accent, "İ" lower-cases to two characters, control characters vanish): every
normalized character remembers the original character it came from, and a token spans from
the source of its first character to the source of its last.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

from wxb.errors import ConfigError, DataError
from wxb.io import atomic_write_text
from wxb.tokenizers.base import Offsets, Tokenizer, read_tokenizer_config
from wxb.tokenizers.corpus import read_corpus
from wxb.tokenizers.hf import clean_up_tokenization, options_from_hf_config

VOCAB_FILE = "vocab.txt"
PREFIX = "##"  # marks a piece that continues a word
BERT_INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]
BERT_SPECIALS = ("unk", "sep", "pad", "cls", "mask")  # the kinds named in the constructor

# The CJK ideograph blocks BERT splits into single characters (the ranges of the tokenizers
# library, which start the Extension E-F block at U+2B920 where Google's BERT has U+2B820).
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# Unicode's White_Space property (what Rust's char::is_whitespace tests).
_WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _is_control(ch: str) -> bool:
    """Characters the cleaning step drops: controls, format characters, private use, NUL, U+FFFD.

    Tab, newline and carriage return are controls too, but BERT counts them as spaces. Lone
    surrogates (invalid text Python can hold) are dropped as well.
    """
    if ch in "\t\n\r":
        return False
    return ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs")


# The spaces that survive cleaning (\x0b, \x0c and \x85 are controls, so they are dropped, not
# turned into spaces); every other character belongs to some word.
_SPACES = "".join(ch for ch in _WHITE_SPACE if not _is_control(ch))
_NON_SPACE_RUN = re.compile(f"[^{re.escape(_SPACES)}]+")


def _is_punctuation(ch: str) -> bool:
    # ASCII symbols such as $ + < = > ^ ` | ~ are not in Unicode's P* categories; BERT splits
    # them off anyway.
    return ch in _ASCII_PUNCTUATION or unicodedata.category(ch).startswith("P")


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def _decompose(chars: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """NFD of ``(char, source)`` pairs, with the sources the ``tokenizers`` library gives.

    Each character decomposes on its own, then every run of combining marks is sorted by
    canonical class, as NFD requires. Sources are handed out in order, as
    ``NormalizedString.transform`` does: a character that stands in for an input character takes
    the source of the next input character not yet used; a character the decomposition added
    takes the source of the last one used. So a decomposed "é" maps both its parts to the "é", and
    only marks typed out of canonical order can end up pointing at a neighbour.
    """
    text = "".join(ch for ch, _ in chars)
    if unicodedata.is_normalized("NFD", text):
        return chars
    pieces = [(part, k > 0) for ch, _ in chars
              for k, part in enumerate(unicodedata.normalize("NFD", ch))]
    start = 0
    while start < len(pieces):
        end = start
        while end < len(pieces) and unicodedata.combining(pieces[end][0]):
            end += 1
        pieces[start:end] = sorted(pieces[start:end], key=lambda p: unicodedata.combining(p[0]))
        start = end + 1
    out, used = [], 0
    for part, added in pieces:
        if added:
            out.append((part, chars[used - 1][1]))
        else:
            out.append((part, chars[used][1]))
            used += 1
    return out


def _clean_piece(piece: str) -> str:
    # The tokenizers WordPiece decoder cleans each piece (with its leading space) on its own,
    # with one rule more than transformers' clean-up of a whole text.
    return clean_up_tokenization(piece).replace(" do not", " don't")


def read_vocab_file(path: str | Path) -> dict[str, int]:
    """Read a BERT ``vocab.txt``: one token per line, the line number is its id."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; give a BERT vocab.txt (one token per line)")
    text = read_corpus(path)
    lines = text.split("\n")
    if lines[-1] == "":  # the newline that ends the last line starts no token
        lines.pop()
    if not lines:
        raise DataError(f"{path} is empty; a vocab.txt lists one token per line")
    # Trailing white space (a "\r" from Windows line ends, stray spaces) is not part of a token,
    # as in the tokenizers library; a token listed twice keeps its last line.
    return {line.rstrip(_WHITE_SPACE): index for index, line in enumerate(lines)}


class WordPieceTokenizer(Tokenizer):
    """BERT's tokenizer: ``WordPieceTokenizer("vocab.txt")("Hello world!")``.

    Args:
        vocab: ``{token: id}`` or the path of a ``vocab.txt``.
        do_lower_case: lower-case the text (the "uncased" BERT models).
        strip_accents: drop accents (NFD, then remove non-spacing marks); None follows
            ``do_lower_case``, as in BERT.
        tokenize_chinese_chars: make every CJK ideograph a word of its own.
        max_input_chars_per_word: a longer word becomes ``[UNK]`` without being cut.
        clean_up_tokenization_spaces: after decoding, also remove the space before
            punctuation and contractions in the whole text (transformers' option; False is its
            default for BERT).
        unk_token, sep_token, pad_token, cls_token, mask_token: BERT's special tokens; the
            single/pair template is ``[CLS] A [SEP]`` / ``[CLS] A [SEP] B [SEP]``.
        **kwargs: the base class options (``special_tokens`` adds other kinds or overrides the
            named ones, ``template``, ``model_max_length``, ``padding_side``, ...).
    """

    kind = "wordpiece"

    def __init__(
        self,
        vocab: dict[str, int] | str | Path,
        *,
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        max_input_chars_per_word: int = 100,
        clean_up_tokenization_spaces: bool = False,
        unk_token: str | None = "[UNK]",
        sep_token: str | None = "[SEP]",
        pad_token: str | None = "[PAD]",
        cls_token: str | None = "[CLS]",
        mask_token: str | None = "[MASK]",
        **kwargs: Any,
    ) -> None:
        source = "the vocabulary"
        if not isinstance(vocab, dict):
            source = str(vocab)
            vocab = read_vocab_file(vocab)
        if max_input_chars_per_word < 1:
            raise ConfigError(f"max_input_chars_per_word must be >= 1, got "
                              f"{max_input_chars_per_word}")
        special = {"unk": unk_token, "sep": sep_token, "pad": pad_token, "cls": cls_token,
                   "mask": mask_token, **(kwargs.pop("special_tokens", None) or {})}
        special = {kind: token for kind, token in special.items() if token is not None}
        unk = special.get("unk")
        if unk is None or unk not in vocab:
            raise ConfigError(f"the unknown token {unk!r} is not in {source}; WordPiece needs "
                              "one (add it to the vocabulary or pass unk_token=...)")
        if "cls" in special and "sep" in special:
            cls, sep = special["cls"], special["sep"]
            kwargs.setdefault("template", {"single": [cls, "$A", sep],
                                           "pair": [cls, "$A", sep, "$B:1", f"{sep}:1"]})
        kwargs.setdefault("model_input_names", list(BERT_INPUT_NAMES))
        super().__init__(special_tokens=special, **kwargs)
        self.vocab = dict(vocab)
        self._unk_id = self.vocab[unk]
        self._id_to_token = {index: token for token, index in self.vocab.items()}
        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.max_input_chars_per_word = max_input_chars_per_word
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        # Special tokens typed in the text are matched leftmost-longest, as the tokenizers
        # library matches its added tokens.
        specials = sorted(set(special.values()), key=len, reverse=True)
        self._special_pattern = re.compile("|".join(map(re.escape, specials)))
        # Text is cut at spaces into chunks that are tokenized independently; the same chunks
        # ("the", "of", ...) come back again and again.
        self._cache: dict[str, tuple[list[int], Offsets]] = {}
        self._check_special_tokens()

    @classmethod
    def from_vocab_file(cls, path: str | Path, **kwargs: Any) -> WordPieceTokenizer:
        """The tokenizer of a BERT ``vocab.txt`` (keyword arguments as for the constructor)."""
        return cls(Path(path), **kwargs)

    # ---------------------------------------------------------------- encoding

    def _encode_text(self, text: str) -> tuple[list[int], Offsets]:
        ids, offsets = [], []
        position = 0
        for match in self._special_pattern.finditer(text):
            self._encode_span(text, position, match.start(), ids, offsets)
            ids.append(self.vocab[match.group()])
            offsets.append(match.span())
            position = match.end()
        self._encode_span(text, position, len(text), ids, offsets)
        return ids, offsets

    def _encode_span(self, text: str, start: int, end: int, ids: list[int],
                     offsets: Offsets) -> None:
        """Append the tokens of ``text[start:end]`` (which holds no special token)."""
        for match in _NON_SPACE_RUN.finditer(text, start, end):
            chunk = match.group()
            cached = self._cache.get(chunk)
            if cached is None:
                cached = self._encode_chunk(chunk)
                # Words repeat; long chunks (a Chinese sentence has no spaces) rarely do.
                if len(chunk) <= 32:
                    if len(self._cache) >= 100_000:
                        self._cache.clear()
                    self._cache[chunk] = cached
            chunk_ids, chunk_offsets = cached
            ids += chunk_ids
            shift = match.start()
            offsets += [(s + shift, e + shift) for s, e in chunk_offsets]

    def _encode_chunk(self, chunk: str) -> tuple[list[int], Offsets]:
        """Ids and offsets (into ``chunk``) of a piece of text without spaces."""
        ids, offsets = [], []
        for word in self._split_words(self._normalize(chunk)):
            for index, start, end in self._wordpiece("".join(ch for ch, _ in word)):
                ids.append(index)
                offsets.append((word[start][1], word[end - 1][1] + 1))
        return ids, offsets

    def _normalize(self, chunk: str) -> list[tuple[str, int]]:
        """BERT's normalization of ``chunk``: each character with the index of its source."""
        chars = [(ch, i) for i, ch in enumerate(chunk) if not _is_control(ch)]
        strip_accents = self.do_lower_case if self.strip_accents is None else self.strip_accents
        if strip_accents:
            chars = [(ch, i) for ch, i in _decompose(chars) if unicodedata.category(ch) != "Mn"]
        if self.do_lower_case:
            # One character at a time, as Rust's char::to_lowercase: a final "Σ" stays "σ".
            chars = [(low, i) for ch, i in chars for low in ch.lower()]
        return chars

    def _split_words(self, chars: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
        """Cut normalized characters into words: punctuation and CJK ideographs stand alone."""
        words, word = [], []
        for ch, source in chars:
            if _is_punctuation(ch) or (self.tokenize_chinese_chars and _is_cjk(ch)):
                if word:
                    words.append(word)
                    word = []
                words.append([(ch, source)])
            else:
                word.append((ch, source))
        if word:
            words.append(word)
        return words

    def _wordpiece(self, word: str) -> list[tuple[int, int, int]]:
        """Greedy longest-match-first: ``(id, start, end)`` of each piece of ``word``."""
        unk = [(self._unk_id, 0, len(word))]
        if len(word) > self.max_input_chars_per_word:
            return unk
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else PREFIX + word[start:end]
                if piece in self.vocab:
                    pieces.append((self.vocab[piece], start, end))
                    start = end
                    break
            else:  # no entry starts here: the whole word is unknown
                return unk
        return pieces

    def _decode_tokens(self, ids: list[int]) -> str:
        # Ids outside the vocabulary are skipped, as the tokenizers library skips them.
        tokens = [token for token in map(self.id_to_token, ids) if token is not None]
        pieces = []
        for k, token in enumerate(tokens):
            if k > 0:
                token = token[len(PREFIX):] if token.startswith(PREFIX) else " " + token
            pieces.append(_clean_piece(token))
        text = "".join(pieces)
        return clean_up_tokenization(text) if self.clean_up_tokenization_spaces else text

    # ---------------------------------------------------------------- vocabulary

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def id_to_token(self, index: int) -> str | None:
        return self._id_to_token.get(index)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # ---------------------------------------------------------------- files

    def options(self) -> dict[str, Any]:
        return {**super().options(), "do_lower_case": self.do_lower_case,
                "strip_accents": self.strip_accents,
                "tokenize_chinese_chars": self.tokenize_chinese_chars,
                "max_input_chars_per_word": self.max_input_chars_per_word,
                "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces}

    def _save_files(self, folder: Path) -> None:
        by_id = sorted(self._id_to_token.items())
        gaps = [index for k, (index, _) in enumerate(by_id) if index != k]
        if gaps:
            raise ConfigError(f"vocab.txt numbers tokens by line, but this vocabulary's ids are "
                              f"not 0..{len(by_id) - 1} (id {gaps[0]} comes after a gap); "
                              "renumber the vocabulary before saving")
        atomic_write_text(folder / VOCAB_FILE, "".join(token + "\n" for _, token in by_id))

    @classmethod
    def _from_files(cls, folder: Path, options: dict[str, Any]) -> WordPieceTokenizer:
        path = folder / VOCAB_FILE
        if not path.is_file():
            raise DataError(f"{path} does not exist; a WordPiece tokenizer folder holds "
                            "vocab.txt (one token per line)")
        config = read_tokenizer_config(folder)
        if "wxb_tokenizer" in config:
            # The saved special_tokens are the whole set: a BERT token left out on purpose
            # (mask_token=None) must not come back as a default.
            options = {**{f"{kind}_token": None for kind in BERT_SPECIALS}, **options}
        else:
            # A Hugging Face BERT folder: vocab.txt and perhaps its tokenizer_config.json.
            options = options_from_hf_config(config)
            options.setdefault("model_input_names", list(BERT_INPUT_NAMES))
            for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars"):
                if key in config:
                    options[key] = config[key]
        return cls(path, **options)
