"""R-CNN's object category classifiers (Girshick et al. 2014, §2.3): one linear SVM a class
on fc7 features, trained with hard negative mining as the released code does it
(rcnn_train.m)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

# rcnn_train.m: liblinear's L2-regularised hinge loss (-s 3), C = 1e-3, positives weighted 2
# (-w1 2), the bias an extra feature of value 10 (-B 10); features scaled so that their mean
# norm is 20 (rcnn_scale_features), which is what C = 1e-3 is set for.
SVM_C = 1e-3
POSITIVE_LOSS_WEIGHT = 2.0
BIAS_MULTIPLIER = 10.0
FEATURE_NORM = 20.0
# Hard negative mining as rcnn_train.m does it (Felzenszwalb et al.'s method): a negative
# that scores above -1 (inside the margin) is hard and joins the cache; the SVM is trained
# again once 2,000 have joined, and then negatives below -1.2 are evicted as easy.
HARD_SCORE = -1.0001
EASY_SCORE = -1.2
RETRAIN_LIMIT = 2000


def train_svm(positives: torch.Tensor, negatives: torch.Tensor) -> tuple[torch.Tensor, float]:
    """A linear SVM separating `positives` from `negatives` (rows of features), as
    rcnn_train.m trains it with liblinear: hinge loss, C = 1e-3, positive errors weighted 2,
    the bias learned as the weight of an extra feature of value 10. Weight and bias."""
    features = torch.cat([positives, negatives]).double().numpy()
    targets = [1] * len(positives) + [0] * len(negatives)
    svm = LinearSVC(
        C=SVM_C,
        loss="hinge",
        dual=True,
        class_weight={1: POSITIVE_LOSS_WEIGHT, 0: 1.0},
        intercept_scaling=BIAS_MULTIPLIER,
        max_iter=10_000,
    )
    with warnings.catch_warnings():
        # liblinear stops at max_iter on hard caches; the next retraining starts afresh.
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        svm.fit(features, targets)
    return torch.from_numpy(svm.coef_[0]).float(), float(svm.intercept_[0])


@dataclass
class HardNegativeCache:
    """One class's SVM while the training images pass (§2.3, "standard hard negative mining
    method"): the fc7 features of its ground-truth boxes, a cache of hard negatives, and
    the SVM trained on them, in features scaled by `feature_scale`.

    Negatives count from the first image with a box of the class on: that image's
    negatives all join (rcnn_train.m starts from every negative of its first image, having
    gathered the positives beforehand), the SVM is trained, and from then on only the
    negatives it scores above -1 join; it is trained again once 2,000 have joined.
    """

    feature_scale: float
    positives: list[torch.Tensor] = field(default_factory=list)
    negatives: torch.Tensor | None = None  # float16, to halve the cache
    weight: torch.Tensor | None = None  # on unscaled features
    bias: float = 0.0
    added: int = 0  # negatives that joined since the SVM was last trained

    def add_positives(self, features: torch.Tensor) -> None:
        self.positives.append(features.detach().cpu().half())

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return features.float() @ self.weight + self.bias

    def add_negatives(self, features: torch.Tensor, negatives: torch.Tensor) -> int:
        """Let the hard ones among the rows of `features` that `negatives` marks join the
        cache; how many joined. Before the class has a box there is no SVM to tell hard from
        easy, nor anything to train: none join."""
        if not self.positives:
            return 0
        if self.weight is not None:
            negatives = negatives & (self.scores(features) > HARD_SCORE)
        features = features[negatives].detach().cpu()
        if len(features) == 0:
            return 0
        cached = [] if self.negatives is None else [self.negatives]
        self.negatives = torch.cat([*cached, features.half()])
        self.added += len(features)
        return len(features)

    def due(self) -> bool:
        """Whether to train: on the first negatives, or once RETRAIN_LIMIT more joined."""
        return self.negatives is not None and (self.weight is None or self.added > RETRAIN_LIMIT)

    def train(self) -> None:
        """Train the SVM on the positives and the cache, then evict the easy negatives."""
        weight, self.bias = train_svm(
            torch.cat(self.positives).float() * self.feature_scale,
            self.negatives.float() * self.feature_scale,
        )
        self.weight = weight * self.feature_scale
        self.negatives = self.negatives[self.scores(self.negatives) >= EASY_SCORE]
        self.added = 0
