"""Serving: each shard's class probabilities, and their aggregation into one prediction."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import numpy as np
import torch
from torch import nn

FloatArray = np.ndarray[Any, np.dtype[np.float32]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]


class Aggregation(StrEnum):
    """How the shards' predictions become one. Each is a function of the shards' current models only,
    so every one is exact under erasure: retraining a shard changes its vote or probabilities and
    nothing else (a weighting fitted on data would itself have to be retrained; see docs/benchmarks.md)."""

    VOTE = "vote"
    """Majority vote of the shards' labels; ties go to the higher mean probability."""
    MEAN = "mean"
    """Argmax of the mean of the shards' probabilities."""
    GEOMEAN = "geomean"
    """Argmax of the mean of the shards' log-probabilities: the normalised geometric mean, a product of
    experts. A shard that is confident a class is wrong vetoes it, where the mean only outvotes it."""


_TINY = float(np.finfo(np.float32).tiny)
"""A float32 softmax rounds very small probabilities to zero; the log of this stands in for them."""


def predict_proba(model: nn.Module, features: FloatArray, device: torch.device, batch_size: int = 4096) -> FloatArray:
    """One shard's class probabilities for `features`, shape (rows, classes): what `aggregate` combines.

    The model is put in eval mode and moved to `device` (in place), and rows go through in batches
    of `batch_size` under `no_grad`, so a large table needs no more device memory than one batch.
    No rows give a (0, 0) array. Raises no error of its own: a feature width the model does not take
    fails in torch (RuntimeError).
    """
    model.eval()
    model.to(device)
    chunks = []
    with torch.no_grad():
        for start in range(0, features.shape[0], batch_size):
            x = torch.from_numpy(features[start : start + batch_size]).to(device)
            chunks.append(torch.softmax(model(x), dim=1).cpu().numpy())
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32)


def aggregate(probabilities: FloatArray, method: Aggregation) -> IntArray:
    """`probabilities` has shape (shards, rows, classes); returns one class index per row."""
    if probabilities.ndim != 3:
        raise ValueError(f"expected (shards, rows, classes), got shape {probabilities.shape}")
    mean = probabilities.mean(axis=0)
    if method is Aggregation.MEAN:
        return np.asarray(mean.argmax(axis=1), dtype=np.int64)
    if method is Aggregation.GEOMEAN:
        logs = np.log(np.maximum(probabilities.astype(np.float64), _TINY)).mean(axis=0)
        return np.asarray(logs.argmax(axis=1), dtype=np.int64)
    classes = probabilities.shape[2]
    votes = np.stack([np.bincount(row, minlength=classes) for row in probabilities.argmax(axis=2).T])
    # Among the classes with the most votes, the mean probability breaks the tie.
    tied = votes == votes.max(axis=1, keepdims=True)
    return np.asarray(np.where(tied, mean, -np.inf).argmax(axis=1), dtype=np.int64)
