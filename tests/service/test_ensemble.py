"""The served ensemble's fast paths give `encode`'s and `predict_proba`'s bits, or step aside."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forget.data.ingest import encode
from forget.data.schema import ColumnKind, FeatureColumn, Schema
from forget.errors import InputError
from forget.service.ensemble import PREDICT_BATCH, _probabilities, numeric_rows
from sisa.aggregation import predict_proba

COLUMNS = (
    FeatureColumn("a", ColumnKind.NUMERIC, scale=math.ldexp(1.0, 3)),
    FeatureColumn("b", ColumnKind.NUMERIC, scale=math.ldexp(1.0, -70)),
    FeatureColumn("c", ColumnKind.NUMERIC, center=1.5, scale=0.3, declared=True),
    FeatureColumn("d", ColumnKind.NUMERIC),
)
SCHEMA = Schema(subject_column="s", label_column="y", labels=("no", "yes"), features=COLUMNS)

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(min_value=-1e-19, max_value=1e-19),  # around the flush-to-zero threshold, 2^-64
    st.integers(min_value=-(2**53), max_value=2**53),
    st.sampled_from([2.0**64, -(2.0**64), 2.0**64 * (1 + 2**-52), 0.0, -0.0, 5, 2**53]),
)


def _encoded(rows: list[dict[str, Any]], schema: Schema) -> np.ndarray[Any, Any] | str:
    """What the general path gives: encode's array, or its error message."""
    names = [f.name for f in schema.features]
    try:
        table = pa.Table.from_pylist([{n: row[n] for n in names} for row in rows])
        return encode(table, schema, "the request")
    except InputError as error:
        return str(error)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return "arrow refused"


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # both paths: float32 inf
@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries({c.name: numbers for c in COLUMNS}), min_size=1, max_size=5))
def test_the_fast_path_gives_encodes_bits_or_steps_aside(rows: list[dict[str, Any]]) -> None:
    fast = numeric_rows(rows, SCHEMA)
    general = _encoded(rows, SCHEMA)
    if fast is None:
        # It steps aside only for what the general path refuses (a value beyond +-2^64 in a derived column).
        assert isinstance(general, str)
    else:
        assert isinstance(general, np.ndarray), general
        assert fast.dtype == np.float32 and fast.tobytes() == general.tobytes()


@pytest.mark.parametrize("value", [True, None, "1.5", float("nan"), float("inf"), 2**53 + 1, -(2**64)], ids=repr)
def test_anything_but_plain_finite_numbers_takes_encodes_path(value: object) -> None:
    row = {"a": 1.0, "b": 2.0, "c": value, "d": 4}
    assert numeric_rows([row], SCHEMA) is None


def test_a_schema_with_a_category_takes_encodes_path() -> None:
    schema = Schema("s", "y", ("no", "yes"), (*COLUMNS, FeatureColumn("e", ColumnKind.CATEGORICAL, categories=("x",))))
    assert numeric_rows([{"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": "x"}], schema) is None


def test_the_probabilities_are_predict_probas_bits() -> None:
    assert inspect.signature(predict_proba).parameters["batch_size"].default == PREDICT_BATCH
    generator = torch.Generator().manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    model.eval()
    features = np.random.default_rng(3).normal(size=(PREDICT_BATCH + 7, 6)).astype(np.float32)
    for rows in (features[:1], features):
        ours = _probabilities(model, rows, torch.device("cpu"))
        assert ours.tobytes() == predict_proba(model, rows, torch.device("cpu")).tobytes()
