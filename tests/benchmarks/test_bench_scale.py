"""benchmarks/bench_scale.py (issue 15's scaling curves) at a tiny size: every field, resuming, the plots."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_scale.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scale", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = load_script()


def bench_run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip


def assert_every_field(line: dict[str, Any]) -> None:
    missing = [key for key in bench.SCALARS if key not in line]
    for timing, keys in bench.FIELDS.items():
        missing += [f"{timing}.{key}" for key in keys if key not in line.get(timing, {})]
    assert not missing, f"missing fields: {missing}"


def fake_line(records: int, shards: int, slices: int) -> dict[str, Any]:
    """A line with every field, its times falling as shards grow (for the plots alone)."""
    timing = {"wall_s": 10.0 * records / 10_000 / shards, "cpu_s": 1.0, "load_1m": 0.5, "peak_rss_mib": 300.0}
    line: dict[str, Any] = dict.fromkeys(bench.SCALARS, 1)
    line |= {"records": records, "shards": shards, "slices": slices, "database": "sqlite", "executor": "local",
             "epochs": 10.0, "cpus": 2, "load_1m_start": 0.5}  # fmt: skip
    for name, keys in bench.FIELDS.items():
        line[name] = {key: timing.get(key, 1) for key in keys}
    return line


def test_the_ideal_speedup_is_full_training_over_the_mean_retraining_share() -> None:
    for shards, slices in ((1, 1), (5, 10), (100, 10), (20, 1)):
        mean_share = sum(bench.retrain_share(f, shards, slices) for f in range(slices)) / slices
        assert bench.expected_speedup(shards, slices) == pytest.approx(1 / mean_share)
    assert bench.expected_speedup(1, 1) == 1
    assert bench.retrain_share(0, 1, 10) == 1


@pytest.mark.slow  # 2.5 to 4 s: matplotlib's import and 17 log-log panels
def test_plot_mode_writes_the_three_pngs(tmp_path: Path) -> None:
    lines = [fake_line(n, s, r) for n in (10_000, 100_000) for s in (1, 5, 20) for r in (1, 10)]
    for line in lines:
        assert_every_field(line)
    out = tmp_path / "scale.jsonl"
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    bench.main(["--out", str(out), "--plot", "--images", str(tmp_path / "images")])
    written = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert written == ["scale-erasure-speedup.png", "scale-time-vs-records.png", "scale-time-vs-shards.png"]
    for name in written:
        assert (tmp_path / "images" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_tiny_point_measures_every_field_and_is_not_measured_again(tmp_path: Path) -> None:
    out = tmp_path / "scale.jsonl"
    tiny = ("--out", out, "--records", 300, "--shards", 2, "--slices", 2, "--repeats", 2, "--batch", 5,
            "--epochs", 1, "--workdir", tmp_path)  # fmt: skip
    done = bench_run(*tiny)
    assert done.returncode == 0, done.stderr
    [line] = [json.loads(text) for text in out.read_text().splitlines()]
    assert_every_field(line)
    assert (line["records"], line["shards"], line["slices"], line["database"]) == (300, 2, 2, "sqlite")
    assert len(line["erase_one_in_process"]["samples"]) == len(line["erase_one_process"]["samples"]) == 2
    assert line["erase_batch"]["subjects"] == 5
    assert line["erase_batch"]["records_erased"] >= 5
    assert line["checkpoints"] == 4 and line["checkpoint_bytes"] > 0 and line["database_bytes"] > 0
    assert line["workers_cpu_s"] is None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("forget-bench-scale-")] == []

    again = bench_run(*tiny)
    assert again.returncode == 0, again.stderr
    assert "0 of 1 points to measure (1 already in" in again.stderr
    assert len(out.read_text().splitlines()) == 1

    plotted = bench_run("--out", out, "--plot", "--images", tmp_path / "images")
    assert plotted.returncode == 0, plotted.stderr
    assert {p.suffix for p in (tmp_path / "images").iterdir()} == {".png"}
