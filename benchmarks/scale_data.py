"""Fertility-like rows at any scale, deterministic: the data behind the scaling benchmarks (issue 15).

The columns follow AER's Fertility table (the 1980 US census extract: whether a mother of two has
a third child), with a subject id and a record id added: `morekids` (label, yes/no), `gender1`,
`gender2` (male/female), `age` (21-35), `afam`, `hispanic`, `other` (yes/no), `work` (weeks
worked, 0-52). The label depends on the features (same-sex first children raise the odds of a
third, as in the census), so a model has something to learn.

Subjects: 70% of them hold one record, the rest 2 to 8 (a household's several census years, say),
so erasing one subject removes one to eight records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MULTI_SHARE = 0.3


def subject_of_rows(rows: int, rng: np.random.Generator) -> np.ndarray:
    counts: list[int] = []
    total = 0
    while total < rows:
        n = int(rng.integers(2, 9)) if rng.random() < MULTI_SHARE else 1
        counts.append(min(n, rows - total))
        total += counts[-1]
    subjects = np.repeat(np.arange(len(counts)), counts)
    return rng.permutation(subjects)


def fertility_like(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    subjects = subject_of_rows(rows, rng)
    gender1 = rng.random(rows) < 0.51
    gender2 = rng.random(rows) < 0.51
    age = rng.integers(21, 36, rows)
    afam = rng.random(rows) < 0.05
    hispanic = rng.random(rows) < 0.07
    other = rng.random(rows) < 0.06
    work = np.where(rng.random(rows) < 0.45, 0, rng.integers(1, 53, rows))
    logit = -0.6 + 0.35 * (gender1 == gender2) - 0.03 * (age - 28) + 0.3 * afam + 0.25 * hispanic - 0.02 * work
    morekids = rng.random(rows) < 1 / (1 + np.exp(-logit))
    yes_no = np.array(["no", "yes"])
    sex = np.array(["female", "male"])
    return pa.table(
        {
            "subject": pa.array([f"person-{s:08d}" for s in subjects]),
            "record": pa.array([f"r{i:09d}" for i in range(rows)]),
            "morekids": pa.array(yes_no[morekids.astype(int)]),
            "gender1": pa.array(sex[gender1.astype(int)]),
            "gender2": pa.array(sex[gender2.astype(int)]),
            "age": pa.array(age.astype(np.int64)),
            "afam": pa.array(yes_no[afam.astype(int)]),
            "hispanic": pa.array(yes_no[hispanic.astype(int)]),
            "other": pa.array(yes_no[other.astype(int)]),
            "work": pa.array(work.astype(np.int64)),
        }
    )


def write(path: Path, rows: int, seed: int = 0) -> Path:
    table = fertility_like(rows, seed)
    if path.suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write(args.path, args.rows, args.seed)


if __name__ == "__main__":
    main()
