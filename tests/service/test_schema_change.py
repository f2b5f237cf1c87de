"""A served ensemble follows a schema that another process re-derived (a cron `forget run`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forget.service.ensemble import ServedEnsemble
from forget.workspace.core import open_workspace
from tests.cli.test_schema_erasure import K, build, erase, exactly_k, schema_of
from tests.conftest import write_rows, write_tabular_csv

pytestmark = pytest.mark.slow


def test_rows_are_encoded_with_the_schema_the_answering_models_were_trained_on(tmp_path: Path) -> None:
    records, holder = exactly_k(write_tabular_csv(tmp_path / "all.csv", rows=203))
    write_rows(tmp_path / "all.csv", records)
    ws = build(
        tmp_path / "ws", "sqlite:///forget.db", tmp_path / "all.csv", True, "--min-subjects-per-category", str(K)
    )
    served = ServedEnsemble(open_workspace(ws), "cpu")  # a long-lived server's view
    numeric = ("x1", "x2", "x3")
    rows: list[dict[str, object]] = [
        {k: float(v) if k in numeric else v for k, v in r.items() if k not in ("subject", "label", "record")}
        for r in records[:4]
    ]
    before = served.predict(rows)
    width = schema_of(ws)["input_shape"]

    out = erase(ws, [holder])  # another process: the schema loses a category and a class
    assert "the feature schema changed with the retained data" in out
    assert schema_of(ws)["input_shape"] != width

    after = served.predict(rows)
    assert after.shards == before.shards == [0, 1, 2, 3]
    assert served.workspace.config.schema is not None
    assert set(after.labels) <= set(served.workspace.config.schema.labels)
