"""The feature extractor for sample-quality scores: a small classifier trained on the
real labelled data (sklearn's 8x8 digits, or any labelled image tensor set).

Its last hidden layer is the feature space for Frechet distance, precision/recall and
density/coverage; its prediction is the class a sample looks like, for conditional
accuracy. It is an MLP over flattened images built from fastgan's fused LinearAct
blocks, so it runs through the same ops as the models it scores.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from ..nn import LinearAct
from . import _inputs as I


class FeatureClassifier(nn.Module):
    """MLP: flattened image -> hidden layers (ReLU) -> class logits."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (256, 128)):
        super().__init__()
        if in_features < 1 or num_classes < 2 or not hidden or min(hidden) < 1:
            raise ValueError(
                f"need in_features >= 1, num_classes >= 2 and positive hidden sizes, got "
                f"in_features={in_features}, num_classes={num_classes}, hidden={tuple(hidden)}"
            )
        sizes = [in_features, *hidden]
        self.body = nn.Sequential(*(LinearAct(a, b, act="relu") for a, b in zip(sizes, sizes[1:])))
        self.head = LinearAct(sizes[-1], num_classes)
        self.in_features = in_features
        self.num_classes = num_classes

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1).to(self.head.weight.dtype)
        if x.shape[1] != self.in_features:
            raise ValueError(f"x must have {self.in_features} values per sample, got shape {tuple(x.shape)}")
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer, [N, hidden[-1]]: the space the scores are computed in."""
        return self.body(self._flat(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, predicted class) of every sample, in eval mode, in batches."""
        was_training = self.training
        self.eval()
        feats, preds = [], []
        for start in range(0, x.shape[0], batch_size):
            f = self.features(x[start:start + batch_size])
            feats.append(f)
            preds.append(self.head(f).argmax(1))
        self.train(was_training)
        return torch.cat(feats), torch.cat(preds)


def train_classifier(
    images,
    labels,
    *,
    hidden: Sequence[int] = (256, 128),
    epochs: int = 60,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> FeatureClassifier:
    """Train a FeatureClassifier on real images [N, ...] with labels [N] (0..C-1)."""
    if isinstance(images, torch.Tensor):
        images = images.reshape(images.shape[0], -1) if images.dim() > 2 else images
    x = I.points("images", images).float()
    y = I.labels("labels", labels, x.shape[0])
    if int(y.min()) < 0:
        raise ValueError(f"labels must be class indices >= 0, got {int(y.min())}")
    num_classes = int(y.max()) + 1
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = FeatureClassifier(x.shape[1], max(num_classes, 2), hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for start in range(0, x.shape[0], batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()
