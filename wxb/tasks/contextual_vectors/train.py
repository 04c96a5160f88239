"""One word, several senses: what each layer of a pretrained biLM makes of it (task
``contextual-vectors``; the 2023 series' day 19 figure of ELMo).

    groups of sentences, the target word in each sense -> the biLM reads each sentence framed
    by <S> and </S> -> the target word's vector from each layer: 0 = the character CNN's token
    vector (static: the same in every sentence), 1 and 2 = the LSTM layers (forward; backward)
    -> per word and layer: sense separation, nearest-neighbour sense accuracy, a PCA map

Sense separation is the mean cosine similarity of two sentences' vectors of the same sense
minus that of two sentences of different senses: 0 when the vectors do not tell the senses
apart, and layer 0 gives exactly 0 (the character CNN sees the word alone, so every sentence
gives it the same vector). The nearest-neighbour accuracy is leave-one-out: each sentence takes
the sense of the other sentence whose vector is most similar; where several are equally similar
(layer 0: all of them) it scores the share of those that have its sense, so a layer that cannot
tell the senses apart scores what a random pick would, not what the order of the sentences
happens to give.

The config (a recipe with ``task: contextual-vectors`` is one)::

    model: {elmo: DIR}              a biLM folder (the bilm task's, e.g. runs/bilm-conll/model)
    data:  {targets: {bank: {river: [sentence, ...], money: [...]}, play: {...}}}
    plot:  {method: pca, seed: 0}

A sentence is its words separated by spaces (punctuation as words of its own, as in CoNLL's
text the biLM learned from); the target must be one of them exactly, capitals included: the
characters of "Apple" and "apple" differ, and so would their layer-0 vectors. Where a sentence
holds the target more than once, the first is read.

Metrics: ``<word>_layer<j>_separation`` and ``<word>_layer<j>_nn_accuracy`` for each target and
layer, and ``layer<j>_separation`` / ``layer<j>_nn_accuracy``, their means over the targets.
Plots: ``<word>_layer<j>``, one PNG per target and layer, each point a sentence coloured by
its sense.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from wxb.config import check_section_keys
from wxb.errors import DataError
from wxb.tasks.models import load_bilm
from wxb.tasks.run import Run
from wxb.tasks.sections import Section

TIE = 1e-6  # cosine similarities this close count as one (layer 0's equal vectors)


@dataclasses.dataclass
class ModelSection(Section):
    """``elmo``: the folder of a pretrained biLM."""

    elmo: str | None = None

    def check(self) -> None:
        if self.elmo is None:
            raise self.fail("model.elmo is missing: give a biLM folder of the bilm task, e.g. "
                            "runs/bilm-conll/model (wxb recipe run bilm-conll)")


@dataclasses.dataclass
class DataSection(Section):
    """``targets``: each target word -> its senses -> the sentences using it in that sense."""

    targets: dict = dataclasses.field(default_factory=dict)

    def check(self) -> None:
        example = "e.g. {bank: {river: [sentence, ...], money: [sentence, ...]}}"
        if not self.targets:
            raise self.fail(f"data.targets is missing: give target words and their senses, "
                            f"{example}")
        for word, senses in self.targets.items():
            where = f"data.targets.{word}"
            if not isinstance(senses, dict) or len(senses) < 2:
                raise self.fail(f"{where} must map two or more senses to their sentences, "
                                f"{example}")
            for sense, sentences in senses.items():
                if (not isinstance(sentences, list) or len(sentences) < 2
                        or not all(isinstance(s, str) for s in sentences)):
                    raise self.fail(f"{where}.{sense} must be a list of two or more sentences "
                                    "(strings): a sense's similarity is that of its pairs")

    def occurrences(self) -> dict[str, list[tuple[str, list[str], int]]]:
        """Per target: (sense, words, index of the target) for every sentence, in order; a
        sentence without the target is a one-line error naming it."""
        found: dict[str, list[tuple[str, list[str], int]]] = {}
        for word, senses in self.targets.items():
            found[str(word)] = rows = []
            for sense, sentences in senses.items():
                for number, sentence in enumerate(sentences, start=1):
                    words = sentence.split()
                    if str(word) not in words:
                        raise DataError(f"data.targets.{word}.{sense}, sentence {number} "
                                        f"({sentence!r}): no word {str(word)!r}; the target "
                                        "must be one of the words (split at spaces) exactly, "
                                        "capitals included")
                    rows.append((str(sense), words, words.index(str(word))))
        return found


@dataclasses.dataclass
class PlotSection(Section):
    """How the maps project the vectors to 2-D."""

    method: Literal["pca", "tsne", "umap"] = "pca"
    seed: int = 0


SECTIONS = {"model": ModelSection, "data": DataSection, "plot": PlotSection}


def target_vectors(bilm: Any, rows: list[tuple[str, list[str], int]]) -> np.ndarray:
    """(layers, sentences, 2 * projection_dim) float64: the target's vector in each layer of
    each sentence (``rows`` as ``DataSection.occurrences`` gives them)."""
    import torch

    from wxb.models.elmo import batch_to_ids

    char_ids, mask = batch_to_ids([words for _, words, _ in rows],
                                  bilm.config.max_characters_per_token)
    with torch.no_grad():
        layers = bilm.layer_representations(char_ids.to(bilm.device), mask.to(bilm.device))
    at = torch.tensor([k + 1 for _, _, k in rows])  # position 0 is <S>
    picked = [h[torch.arange(len(rows)), at] for h in layers]
    return torch.stack(picked).double().cpu().numpy()


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """(n, n) cosine similarities of the rows of ``vectors`` (n, d)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def sense_separation(vectors: np.ndarray, senses: list[str]) -> float:
    """Mean cosine similarity over pairs of sentences of the same sense minus that over pairs
    of different senses (each pair once, no sentence with itself)."""
    similarity = cosine_matrix(vectors)
    same = np.equal.outer(np.array(senses), np.array(senses))
    pairs = ~np.eye(len(senses), dtype=bool)
    return float(similarity[same & pairs].mean() - similarity[~same].mean())


def nearest_neighbour_accuracy(vectors: np.ndarray, senses: list[str]) -> float:
    """Leave-one-out: the share of sentences whose most similar other sentence has their sense;
    equally similar neighbours (within ``TIE``) share the vote."""
    similarity = cosine_matrix(vectors)
    np.fill_diagonal(similarity, -np.inf)
    labels = np.array(senses)
    scores = []
    for i, row in enumerate(similarity):
        nearest = row >= row.max() - TIE
        scores.append(float(np.mean(labels[nearest] == labels[i])))
    return float(np.mean(scores))


def train_contextual_vectors(config: dict[str, Any], *, resume: bool = False,
                       log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure and plot how each layer of the configured biLM separates the senses of each
    target word; returns the contents of ``result.json``. Nothing is trained (``resume`` is
    accepted for the registry's signature and changes nothing)."""
    from wxb.viz import plot_embeddings

    run = Run("contextual-vectors", config, SECTIONS, log=log)
    check_section_keys("training", config.get("training") or {}, ("output_dir",))  # no training
    model_section, data, plot = run["model"], run["data"], run["plot"]
    found = data.occurrences()  # a missing target is refused before the biLM is read
    bilm = load_bilm(model_section.elmo)
    num_layers = bilm.config.num_hidden_layers + 1
    names = [f"layer{j}_{m}" for j in range(num_layers) for m in ("separation", "nn_accuracy")]
    run.expect([*names, *(f"{w}_{n}" for w in found for n in names)])
    out = run.output_dir
    out.mkdir(parents=True, exist_ok=True)

    metrics: dict[str, float] = {}
    plots: dict[str, str] = {}
    for word, rows in found.items():
        senses = [sense for sense, _, _ in rows]
        vectors = target_vectors(bilm, rows)
        counts = ", ".join(f"{s} {senses.count(s)}" for s in dict.fromkeys(senses))
        parts = []
        for j, layer in enumerate(vectors):
            separation = round(sense_separation(layer, senses), 6) + 0.0  # no -0.0
            accuracy = round(nearest_neighbour_accuracy(layer, senses), 6)
            metrics[f"{word}_layer{j}_separation"] = separation
            metrics[f"{word}_layer{j}_nn_accuracy"] = accuracy
            parts.append(f"layer {j} separation {separation:+.3f}, nn accuracy {accuracy:.2f}")
            labels = [f"{sense} {senses[:i + 1].count(sense)}" for i, sense in
                      enumerate(senses)]
            kind = "char CNN, static" if j == 0 else f"LSTM layer {j}"
            # One vector for every sentence (layer 0) is one point; there is nothing to project.
            same = np.allclose(layer, layer[0], rtol=0, atol=TIE)
            plots[f"{word}_layer{j}"] = str(plot_embeddings(
                np.zeros((len(rows), 2)) if same else layer, labels,
                out / f"{word}_layer{j}.png", method="none" if same else plot.method,
                groups=senses, seed=plot.seed,
                title=f"'{word}' in {len(rows)} sentences ({counts}): layer {j} ({kind}), "
                      + ("one vector for all" if same else f"separation {separation:+.3f}")))
        run.log(f"{word} ({counts}): " + "; ".join(parts))
    for j in range(num_layers):
        for m in ("separation", "nn_accuracy"):
            metrics[f"layer{j}_{m}"] = round(float(np.mean(
                [metrics[f"{w}_layer{j}_{m}"] for w in found])), 6)
    headline = f"layer{num_layers - 1}_separation"
    return run.finish(metrics, plots=plots, metric=None if run.goals else headline,
                      model_dir=model_section.elmo,
                      sentences={w: len(rows) for w, rows in found.items()},
                      layers=num_layers)
