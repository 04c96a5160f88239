"""Training static word vectors on a corpus, as a function of one config (task
``word-vectors``): Word2Vec (skip-gram or CBOW), fastText or GloVe.

    corpus files -> sentences of words (wxb.data.corpus) -> the method's training loop
                 -> vectors.txt + vectors.bin (word2vec formats; fastText also model/, whose
                    n-grams give vectors to words never seen)
                 -> analogy accuracy, nearest neighbours of probe words, a 2-D map of them,
                    and optionally gensim trained on the same corpus with the same settings

The config (a recipe with ``task: word-vectors`` is one)::

    data:       {corpus: FILE | [FILES], lowercase: true, text_column: text, limit: null}
    model:      {method: skipgram | cbow | fasttext | glove,
                 <fields of the method's settings: Word2VecConfig, FastTextConfig or
                  GloVeConfig (vector_size, window, min_count, epochs, ...)>}
    evaluation: {probes: [good, movie, ...], topn: 8, restrict_vocab: 30000,
                 reference: none | gensim, plot: pca | tsne}
    max_time_seconds: 600     # the training loop stops after this much wall time

With ``reference: gensim`` (skip-gram, CBOW and fastText), gensim's own implementation trains
on the same sentences with the same settings (one worker) twice, with two seeds: the result
holds its analogy accuracy, the Spearman agreement of its similarities with wxb's
(``gensim_agreement``) and that of gensim with itself under another seed
(``gensim_seed_agreement``), the ceiling to read the first against. The agreement is over every
pair of the ``AGREEMENT_WORDS`` words ranked after the ``AGREEMENT_SKIP`` most frequent
(mostly punctuation and function words, whose vectors say little).
"""

from __future__ import annotations

import dataclasses
import time
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal

from wxb.config import check_known_keys, check_section_keys, coerce
from wxb.data.corpus import read_corpus
from wxb.errors import ConfigError
from wxb.metrics.word_vectors import analogy_accuracy, analogy_questions, similarity_correlation
from wxb.tasks.run import Run
from wxb.tasks.sections import Section, at_least

AGREEMENT_SKIP, AGREEMENT_WORDS = 50, 500
DEFAULT_PROBES = ["good", "bad", "movie", "actor", "germany", "london", "monday", "january",
                  "two", "president"]
METRICS = ("analogy_accuracy", "analogy_questions", "vocab_size", "tokens", "train_seconds",
           "words_per_second", "loss", "gensim_analogy_accuracy", "gensim_agreement",
           "gensim_seed_agreement", "gensim_train_seconds")
Method = Literal["skipgram", "cbow", "fasttext", "glove"]


@dataclasses.dataclass
class DataSection(Section):
    """The corpus files (text lines, CoNLL, CSV/TSV/JSONL with ``text_column``, gzip too)."""

    corpus: str | list | None = None
    lowercase: bool = True
    text_column: str = "text"
    limit: int | None = None

    def check(self) -> None:
        if not self.corpus:
            raise self.fail("give corpus: a file or a list of files")
        at_least("data.limit", self.limit, 1)

    @property
    def files(self) -> list[str]:
        return [self.corpus] if isinstance(self.corpus, str) else [str(p) for p in self.corpus]


@dataclasses.dataclass
class ModelSection(Section):
    """``method`` picks the algorithm; the other keys are fields of its settings."""

    extra_fields = True
    method: Method = "skipgram"

    def check(self) -> None:
        settings_of(self)


@dataclasses.dataclass
class EvaluationSection(Section):
    """What is measured after training (see the module docstring)."""

    probes: list = dataclasses.field(default_factory=lambda: list(DEFAULT_PROBES))
    topn: int = 8
    restrict_vocab: int = 30000
    reference: Literal["none", "gensim"] = "none"
    plot: Literal["pca", "tsne"] = "pca"

    def check(self) -> None:
        at_least("evaluation.topn", self.topn, 1)
        at_least("evaluation.restrict_vocab", self.restrict_vocab, 1)


SECTIONS = {"data": DataSection, "model": ModelSection, "evaluation": EvaluationSection}


def _methods() -> dict[str, tuple[type, Callable, dict[str, Any]]]:
    """method -> (its settings class, its training function, the settings it fixes)."""
    from wxb.models.fasttext import FastTextConfig
    from wxb.models.word2vec import Word2VecConfig
    from wxb.tasks.word_vectors.glove import GloVeConfig, train_glove
    from wxb.tasks.word_vectors.skipgram import train_fasttext, train_word2vec

    return {"skipgram": (Word2VecConfig, train_word2vec, {"sg": 1}),
            "cbow": (Word2VecConfig, train_word2vec, {"sg": 0}),
            "fasttext": (FastTextConfig, train_fasttext, {}),
            "glove": (GloVeConfig, train_glove, {})}


def settings_of(section: ModelSection) -> Any:
    """The method's settings from the model section's other keys, each of its type."""
    cls, _, fixed = _methods()[section.method]
    clash = [k for k in fixed if k in section.extra and section.extra[k] != fixed[k]]
    if clash:
        raise ConfigError(f"model.{clash[0]} is {fixed[clash[0]]} for method "
                          f"{section.method}; leave it out")
    values = {**section.extra, **fixed}
    check_known_keys(cls, values, f"model field for method {section.method}")
    hints = typing.get_type_hints(cls)
    settings = cls(**{k: coerce(f"model.{k}", v, hints[k]) for k, v in values.items()})
    settings.check()
    return settings


def train_word_vectors(config: dict[str, Any], *, resume: bool = False,
                       log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the vectors of ``config``, write them and result.json; return the result."""
    run = Run("word-vectors", config, SECTIONS, log=log)
    # The loops take their settings from the model section; training names the folder only.
    check_section_keys("training", config.get("training") or {}, ("output_dir",))
    run.expect(METRICS)
    data, section, evaluation = run["data"], run["model"], run["evaluation"]
    settings = settings_of(section)
    _, train, _ = _methods()[section.method]
    sentences = read_corpus(data.files, lowercase=data.lowercase,
                            text_column=data.text_column, limit=data.limit)
    tokens = sum(map(len, sentences))
    run.log(f"corpus: {len(sentences):,} sentences, {tokens:,} words")
    trained, stats = train(sentences, settings, log=run.log, max_time=run.max_time)
    out = run.output_dir
    out.mkdir(parents=True, exist_ok=True)
    model_dir = None
    if section.method == "fasttext":
        model_dir = trained.save(out / "model")
        vectors = trained.to_word_vectors()
    else:
        vectors = trained
    vectors.save(out / "vectors.txt", format="word2vec")
    vectors.save(out / "vectors.bin", format="word2vec-binary")

    questions = analogy_questions(vectors.words)
    analogies = analogy_accuracy(vectors, questions, restrict_vocab=evaluation.restrict_vocab)
    seconds = stats["train_time_s"]  # every method's loop reports it, and its epochs
    metrics: dict[str, float] = {
        "analogy_accuracy": analogies["accuracy"], "analogy_questions": analogies["questions"],
        "vocab_size": len(vectors), "tokens": tokens, "train_seconds": seconds,
        "words_per_second": stats.get("words_per_second",
                                      tokens * stats["epochs"] / seconds),
        "loss": _last(stats.get("loss"))}
    run.log(f"analogies: {analogies['accuracy']:.3f} of {analogies['questions']} "
            f"({', '.join(f'{k} {v:.2f}' for k, v in analogies['per_relation'].items())})")
    if evaluation.reference == "gensim":
        metrics.update(_against_gensim(vectors, sentences, section.method, settings, questions,
                                       evaluation, run.log))
    neighbours = {probe: [(w, round(s, 4)) for w, s in vectors.most_similar(
                      probe, topn=evaluation.topn, restrict_vocab=evaluation.restrict_vocab)]
                  for probe in evaluation.probes if probe in vectors}
    plots = {"neighbours": str(_plot_neighbours(vectors, neighbours, out / "neighbours.png",
                                                evaluation.plot, section.method))} \
        if neighbours else {}
    return run.finish(metrics, model_dir=model_dir, plots=plots,
                      vectors_file=str(out / "vectors.txt"), neighbours=neighbours,
                      analogies_per_relation=analogies["per_relation"],
                      analogies_skipped=analogies["skipped"], stats=stats,
                      config=run.resolved(model={"method": section.method,
                                                 **dataclasses.asdict(settings)}))


def _last(value: Any) -> float:
    if isinstance(value, (list, tuple)):
        return float(value[-1]) if value else float("nan")
    return float(value) if value is not None else float("nan")


def gensim_vectors(sentences: Sequence[Sequence[str]], method: str, settings: Any, *,
                   seed: int) -> tuple[Any, float]:
    """gensim's Word2Vec / FastText trained on ``sentences`` with wxb's ``settings`` (one
    worker, ``seed``), as WordVectors, and the seconds its training took (the vocabulary
    built before)."""
    from gensim.models import FastText, Word2Vec

    from wxb.data.vectors import WordVectors

    if method not in ("skipgram", "cbow", "fasttext") or getattr(settings, "softmax", False):
        raise ConfigError(f"evaluation.reference gensim compares skip-gram, CBOW and fastText "
                          f"with negative sampling; not method {method}"
                          + (" with softmax" if getattr(settings, "softmax", False) else ""))
    common = {"vector_size": settings.vector_size, "window": settings.window,
              "min_count": settings.min_count, "sample": settings.sample,
              "negative": settings.negative, "ns_exponent": settings.ns_exponent,
              "alpha": settings.alpha, "min_alpha": settings.min_alpha,
              "epochs": settings.epochs, "sg": settings.sg, "hs": 0, "workers": 1,
              "seed": seed, "max_final_vocab": settings.max_vocab_size}
    epochs = common.pop("epochs")
    if method == "fasttext":
        model = FastText(min_n=settings.min_n, max_n=settings.max_n, bucket=settings.bucket,
                         **common)
    else:
        model = Word2Vec(cbow_mean=1, **common)
    model.build_vocab(sentences)
    start = time.perf_counter()  # the training alone, as wxb's train_seconds
    model.train(sentences, total_examples=len(sentences), epochs=epochs)
    seconds = time.perf_counter() - start
    return WordVectors(list(model.wv.index_to_key), model.wv.vectors,
                       source=f"gensim {method}"), seconds


def _against_gensim(vectors: Any, sentences: Sequence[Sequence[str]], method: str,
                    settings: Any, questions: dict, evaluation: EvaluationSection,
                    log: Callable[[str], None]) -> dict[str, float]:
    theirs, seconds = gensim_vectors(sentences, method, settings, seed=settings.seed)
    again, _ = gensim_vectors(sentences, method, settings, seed=settings.seed + 1)
    words = [w for w in vectors.words[AGREEMENT_SKIP:] if w in theirs][:AGREEMENT_WORDS]
    scores = {
        "gensim_analogy_accuracy": analogy_accuracy(
            theirs, questions, restrict_vocab=evaluation.restrict_vocab)["accuracy"],
        "gensim_agreement": similarity_correlation(vectors, theirs, words),
        "gensim_seed_agreement": similarity_correlation(again, theirs, words),
        "gensim_train_seconds": seconds}
    log(f"gensim: analogies {scores['gensim_analogy_accuracy']:.3f}, agreement with wxb "
        f"{scores['gensim_agreement']:.3f} (gensim with another seed: "
        f"{scores['gensim_seed_agreement']:.3f}), {seconds:.1f}s")
    return scores


def _plot_neighbours(vectors: Any, neighbours: dict[str, list], path: Any, method: str,
                     name: str) -> Any:
    """A 2-D map of each probe word and its neighbours, coloured by probe."""
    import numpy as np

    from wxb.viz import plot_embeddings

    words, groups = [], []
    for probe, near in neighbours.items():
        for word in [probe, *(w for w, _ in near)]:
            if word not in words:
                words.append(word)
                groups.append(probe)
    points = np.stack([vectors[w] for w in words])
    return plot_embeddings(points, words, path, method=method, groups=groups,
                           title=f"{name}: nearest neighbours ({method.upper()})")
