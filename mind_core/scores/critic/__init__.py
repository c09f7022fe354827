"""A learned critic: a filter score trained on a KB's verdicts (or human labels), P(keep) in 0..1.

MIND keeps an intention when its LVLM filter says "yes"; FolkScope, its predecessor, trains a critic classifier on
annotated assertions and thresholds its probability. This package does the same from what a KB holds: the
intention text (word n-grams), its relation, and optionally the stored embeddings and build-time scores.

* :mod:`~mind_core.scores.critic.features` — what is read of a row (:class:`CriticData`) and the feature blocks;
* :mod:`~mind_core.scores.critic.learners` — logistic regression and a one-hidden-layer MLP, as plain arrays;
* :mod:`~mind_core.scores.critic.model` — presets, training with cross-fitting grouped by pair, scoring (no row
  is ever scored by a model that saw its pair), saving / loading (safetensors + JSON);
* :mod:`~mind_core.scores.critic.labels` — the ``verdict`` and ``human`` label sources.

Writing the scores into a KB folder is :mod:`mind_core.kb.critic` (``critic score``, ``build-kb``).
"""

from mind_core.scores.critic.features import FEATURE_BLOCKS, CriticData, CriticError
from mind_core.scores.critic.labels import LABEL_SOURCES, human_labels_path, read_human_labels, verdict_labels
from mind_core.scores.critic.model import (
    DEFAULT_PRESET,
    PRESETS,
    Critic,
    CriticScores,
    fold_of,
    load_critic,
    train_critic,
)

__all__ = [
    "DEFAULT_PRESET",
    "FEATURE_BLOCKS",
    "LABEL_SOURCES",
    "PRESETS",
    "Critic",
    "CriticData",
    "CriticError",
    "CriticScores",
    "fold_of",
    "human_labels_path",
    "load_critic",
    "read_human_labels",
    "train_critic",
    "verdict_labels",
]
