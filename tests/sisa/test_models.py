"""Issue 12: the model registry, the default model and aggregation, and the geometric-mean aggregation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forget.workspace.config import AGGREGATIONS, DEFAULT_MODEL, TrainingSettings, WorkspaceConfig
from sisa.aggregation import Aggregation, aggregate
from sisa.errors import ModelSpecError
from sisa.models import DEFAULT_MODEL as SISA_DEFAULT_MODEL
from sisa.models import MLP, build_model, parameter_count


def test_the_defaults_agree_and_are_the_measured_winners() -> None:
    assert DEFAULT_MODEL == SISA_DEFAULT_MODEL == "tanh-256"
    settings = TrainingSettings()
    assert (settings.model, settings.batch_size, settings.epochs, settings.aggregation) == (
        "tanh-256",
        32,
        10.0,
        "geomean",
    )
    assert tuple(a.value for a in Aggregation) == AGGREGATIONS


def test_parametric_specs_build_what_they_name() -> None:
    tanh = build_model("tanh-128", (600,), 100)
    layers = [type(m).__name__ for m in tanh.modules()][2:]
    assert layers == ["Flatten", "Linear", "Tanh", "Linear"]
    # The SISA reference's Purchase network: 600 -> 128 tanh -> 100.
    assert parameter_count("tanh-128", (600,), 100) == 600 * 128 + 128 + 128 * 100 + 100
    deep = build_model("relu-32x3", (5,), 2)
    assert sum(isinstance(m, torch.nn.ReLU) for m in deep.modules()) == 3
    assert parameter_count("linear", (4, 2), 3) == 8 * 3 + 3
    assert build_model("tanh-256", (1, 8, 8), 10)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_mlp_keeps_its_architecture_for_existing_workspaces() -> None:
    torch.manual_seed(0)
    built = build_model("mlp", (6,), 3)
    torch.manual_seed(0)
    legacy = MLP((6,), 3)
    assert isinstance(built, MLP)
    for a, b in zip(built.state_dict().values(), legacy.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert parameter_count("mlp", (6,), 3) == 6 * 64 + 64 + 64 * 64 + 64 + 64 * 3 + 3


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ModelSpecError, match=r"width is at most 65536 and depth at most 16"):
        build_model("tanh-100000", (3,), 2)
    with pytest.raises(ModelSpecError, match=r"unknown model 'tanh-0'"):
        build_model("tanh-0", (3,), 2)
    with pytest.raises(ModelSpecError, match=r"unknown model 'sigmoid-8'"):
        build_model("sigmoid-8", (3,), 2)


def test_geomean_lets_a_confident_shard_veto() -> None:
    # Two shards prefer class 0; the third is all but sure it is not class 0.
    probabilities = np.array([[[0.9, 0.1]], [[0.9, 0.1]], [[0.001, 0.999]]], dtype=np.float32)
    assert aggregate(probabilities, Aggregation.VOTE).tolist() == [0]
    assert aggregate(probabilities, Aggregation.MEAN).tolist() == [0]  # 0.600 against 0.400
    assert aggregate(probabilities, Aggregation.GEOMEAN).tolist() == [1]  # log-means -2.37 against -1.54
    milder = np.array([[[0.7, 0.3]], [[0.7, 0.3]], [[0.35, 0.65]]], dtype=np.float32)
    assert aggregate(milder, Aggregation.MEAN).tolist() == [0]
    assert aggregate(milder, Aggregation.GEOMEAN).tolist() == [0]
    zeros = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[0.0, 1.0]]], dtype=np.float32)
    assert aggregate(zeros, Aggregation.GEOMEAN).tolist() == [1]  # a zero probability is finite in the log


def test_aggregation_is_a_workspace_setting() -> None:
    base = {"format": 1, "workspace": {"shards": 2, "slices": 1, "seed": 1}, "ledger": {"origin": "o"}}
    # A forget.toml written before the setting existed keeps the vote it was served with.
    assert WorkspaceConfig.from_toml({**base, "training": {}}).training.aggregation == "vote"
    config = WorkspaceConfig(shards=2, slices=1, seed=1, origin="o")
    assert WorkspaceConfig.from_toml(config.to_toml()).training.aggregation == "geomean"
    assert TrainingSettings(aggregation="median").problems() == [
        "aggregation must be vote, mean, geomean (got 'median')"
    ]
