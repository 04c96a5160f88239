"""Reading a training corpus: strict UTF-8, with an error that says where the bad byte is.

Every tokenizer trainer reads its text through ``read_corpus``. Decoding with
``errors="replace"`` would quietly teach a vocabulary U+FFFD wherever a file was saved as GBK,
Big5 or Latin-1; stopping at the first bad byte, with its offset, lets the user fix the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from wxb.errors import DataError


def read_corpus(path: str | os.PathLike) -> str:
    """The text of ``path``, decoded strictly as UTF-8 (a leading byte-order mark is dropped).

    Raises:
        DataError: the file is missing, empty, or not UTF-8 (the message gives the byte offset
            of the first byte that does not decode).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; give a UTF-8 text file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8: byte 0x{data[err.start]:02x} at byte offset "
                        f"{err.start} does not decode ({err.reason}); convert the file to "
                        "UTF-8, e.g. iconv -f GBK -t UTF-8") from None
    text = text.removeprefix("\ufeff")
    if not text:
        raise DataError(f"{path} is empty; a corpus needs some text")
    return text
