"""The smallest word embedding there is (task ``embedding-toy``): twelve sentiment words, each a
learned point in two dimensions, trained to tell the good words from the bad.

    12 words -> nn.Embedding(12, 2) -> nn.Linear(2, 1) -> sigmoid -> binary cross-entropy
             -> plots of the 12 points before and after training (embedding_before/after.png)

Before training the points lie where the random initialisation put them, the two kinds mixed;
after, the classifier has pushed them apart along one direction, and that direction *is* what
the embedding learned: a word's position now says something about its meaning. The run
reports the accuracy and the separation of the two groups (the distance between their centres
over their mean spread) before and after.

The config::

    data:  {positive: [好, 棒, ...], negative: [差, 爛, ...]}   the words (defaults: 6 + 6)
    model: {embedding_size: 2, seed: 0}
    training: {num_train_epochs: 300, learning_rate: 0.05}    one batch of all the words a step

Twelve words make one batch, so this trains with a plain loop of ``torch.optim.Adam``: the
Trainer's checkpoints, evaluation and logging would be all the work.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from wxb.tasks.run import Run
from wxb.tasks.sections import Section, at_least

POSITIVE = ["好", "棒", "讚", "喜歡", "開心", "優秀"]
NEGATIVE = ["差", "爛", "討厭", "難過", "糟糕", "失望"]
METRICS = ("accuracy_before", "accuracy", "separation_before", "separation", "loss")


@dataclasses.dataclass
class DataSection(Section):
    """The words of each kind."""

    positive: list = dataclasses.field(default_factory=lambda: list(POSITIVE))
    negative: list = dataclasses.field(default_factory=lambda: list(NEGATIVE))

    def check(self) -> None:
        if not self.positive or not self.negative:
            raise self.fail("give at least one positive and one negative word")
        twice = set(map(str, self.positive)) & set(map(str, self.negative))
        if twice:
            raise self.fail(f"{sorted(twice)[0]!r} is both positive and negative")


@dataclasses.dataclass
class ModelSection(Section):
    """The embedding's width (2 to plot it as it is) and the initialisation's seed."""

    embedding_size: int = 2
    seed: int = 0

    def check(self) -> None:
        at_least("model.embedding_size", self.embedding_size, 1)


@dataclasses.dataclass
class TrainingSection(Section):
    """Steps (each over all the words) and the learning rate."""

    num_train_epochs: int = 300
    learning_rate: float = 0.05
    output_dir: str = "runs/embedding-toy"

    def check(self) -> None:
        at_least("training.num_train_epochs", self.num_train_epochs, 1)


SECTIONS = {"data": DataSection, "model": ModelSection}


def separation(points: np.ndarray, labels: np.ndarray) -> float:
    """Distance between the two groups' centres over their mean distance to their own centre:
    below 1 the groups overlap, well above 1 they are apart."""
    centres = [points[labels == k].mean(axis=0) for k in (0, 1)]
    spread = np.mean([np.linalg.norm(points[labels == k] - centres[k], axis=1).mean()
                      for k in (0, 1)])
    return float(np.linalg.norm(centres[1] - centres[0]) / max(spread, 1e-12))


def train_embedding_toy(config: dict[str, Any], *, resume: bool = False,
                        log: Any = None) -> dict[str, Any]:
    """Train the twelve-word embedding of ``config`` and write result.json and two plots."""
    import torch
    from torch import nn

    from wxb.viz import plot_embeddings

    run = Run("embedding-toy", config, SECTIONS, log=log)
    training = TrainingSection.from_dict(config.get("training"), "training")
    run.expect(METRICS)
    data, section = run["data"], run["model"]
    words = [str(w) for w in (*data.positive, *data.negative)]
    labels = np.array([1] * len(data.positive) + [0] * len(data.negative))
    torch.manual_seed(section.seed)
    embedding = nn.Embedding(len(words), section.embedding_size)
    classifier = nn.Linear(section.embedding_size, 1)
    ids, target = torch.arange(len(words)), torch.tensor(labels, dtype=torch.float32)

    def scores() -> tuple[float, float, np.ndarray]:
        with torch.no_grad():
            points = embedding(ids)
            guess = (classifier(points).squeeze(-1) > 0).numpy().astype(int)
        points = points.numpy()
        return float((guess == labels).mean()), separation(points, labels), points

    out = Path(training.output_dir)
    accuracy_before, separation_before, before = scores()
    optimizer = torch.optim.Adam([*embedding.parameters(), *classifier.parameters()],
                                 lr=training.learning_rate)
    loss = torch.tensor(0.0)
    for _ in range(training.num_train_epochs):
        loss = nn.functional.binary_cross_entropy_with_logits(
            classifier(embedding(ids)).squeeze(-1), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy_after, separation_after, after = scores()
    run.log(f"accuracy {accuracy_before:.2f} -> {accuracy_after:.2f}, separation "
            f"{separation_before:.2f} -> {separation_after:.2f}, loss {loss.item():.4f}")
    kinds = ["positive" if k else "negative" for k in labels]
    method = "none" if section.embedding_size == 2 else "pca"
    plots = {name: str(plot_embeddings(points, words, out / f"embedding_{name}.png",
                                       method=method, groups=kinds,
                                       title=f"{len(words)} words, {name} training"))
             for name, points in (("before", before), ("after", after))}
    metrics = {"accuracy_before": accuracy_before, "accuracy": accuracy_after,
               "separation_before": separation_before, "separation": separation_after,
               "loss": float(loss.item())}
    return run.finish(metrics, plots=plots, words=words,
                      points={"before": before.round(4).tolist(),
                              "after": after.round(4).tolist()},
                      config=run.resolved(training=training.to_dict()))
