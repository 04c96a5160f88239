"""Text to ids and back: characters, words (jieba), byte-level BPE, WordPiece, tokenizer.json.

Every tokenizer has the same interface (``wxb.tokenizers.base.Tokenizer``); ``load_tokenizer``
picks the class from a folder's files.
"""

from wxb.tokenizers.base import BatchEncoding, Tokenizer
from wxb.tokenizers.load import load_tokenizer, tokenizer_class

__all__ = ["BatchEncoding", "Tokenizer", "load_tokenizer", "tokenizer_class"]
