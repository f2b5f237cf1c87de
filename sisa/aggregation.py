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
    VOTE = "vote"
    """Majority vote of the shards' labels; ties go to the higher mean probability."""
    MEAN = "mean"
    """Argmax of the mean of the shards' probabilities."""


def predict_proba(model: nn.Module, features: FloatArray, device: torch.device, batch_size: int = 4096) -> FloatArray:
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
    classes = probabilities.shape[2]
    votes = np.stack([np.bincount(row, minlength=classes) for row in probabilities.argmax(axis=2).T])
    # Among the classes with the most votes, the mean probability breaks the tie.
    tied = votes == votes.max(axis=1, keepdims=True)
    return np.asarray(np.where(tied, mean, -np.inf).argmax(axis=1), dtype=np.int64)
