"""`forget.toml`: the workspace's settings, training config and feature schema."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import tomli_w

from forget.data.schema import DEFAULT_MIN_SUBJECTS, Schema
from forget.errors import WorkspaceError
from forget.subjects.identity import IdentityForm
from sisa.placement import PlacementMode
from sisa.schedule import Schedule
from sisa.store import write_atomically

AGGREGATIONS = ("vote", "mean", "geomean")
"""sisa.aggregation.Aggregation's values (that module imports torch; this one must not)."""
DEFAULT_MODEL = "tanh-256"
"""sisa.models.DEFAULT_MODEL, repeated so that reading forget.toml never imports torch (a test checks both agree)."""

CONFIG_NAME = "forget.toml"
CONFIG_FORMAT = 1
DEFAULT_DATABASE = "sqlite:///forget.db"


@dataclass(frozen=True)
class TrainingSettings:
    """How each shard's model is trained and the shards combined: `[training]` in forget.toml.

    Fixed at init, since every checkpoint depends on them (`aggregation` aside); pass them to
    `init_workspace` as keywords (`epochs=2, model="tanh-64"`). `problems()` lists what is out of range.
    """

    # The defaults were chosen by measurement on seven data sets (docs/benchmarks.md, "Defaults by
    # measurement"); `forget plan` measures them on the data at hand.
    model: str = DEFAULT_MODEL
    epochs: float = 10.0
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    schedule: Schedule = Schedule.BALANCED
    threads: int = 1
    aggregation: str = "geomean"
    """How `predict` and `evaluate` combine the shards (sisa.aggregation: vote, mean or geomean); serving
    only, never in a checkpoint, so it may change without retraining."""

    def problems(self) -> list[str]:
        """What is wrong with these settings, for one line each (checked at init and on every load)."""
        found = []
        if not (math.isfinite(self.epochs) and 0 < self.epochs <= MAX_EPOCHS):
            found.append(f"epochs must be a finite number in (0, {MAX_EPOCHS}] (got {self.epochs})")
        if not (math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):
            found.append(f"lr must be a finite number in (0, {MAX_LR}] (got {self.lr})")
        if not 1 <= self.batch_size <= MAX_BATCH:
            found.append(f"batch_size must be between 1 and {MAX_BATCH} (got {self.batch_size})")
        if not 1 <= self.threads <= MAX_THREADS:
            found.append(f"threads must be between 1 and {MAX_THREADS} (got {self.threads})")
        if self.optimizer not in ("adam", "sgd"):
            found.append(f"optimizer must be adam or sgd (got {self.optimizer!r})")
        if not self.model.strip():
            found.append("model must be mlp, cnn or package.module:callable")
        if self.aggregation not in AGGREGATIONS:
            found.append(f"aggregation must be {', '.join(AGGREGATIONS)} (got {self.aggregation!r})")
        return found


MAX_EPOCHS = 10_000.0
MAX_LR = 10.0
MAX_BATCH = 1 << 20
MAX_THREADS = 1024
MAX_SHARDS = 100_000
MAX_SLICES = 10_000


MAX_MIN_SUBJECTS = 1_000_000


def min_subjects_problems(min_subjects: int) -> list[str]:
    """k below 2 would let one person shape the schema (DESIGN invariant 9)."""
    if not 2 <= min_subjects <= MAX_MIN_SUBJECTS:
        return [f"min_subjects_per_category must be between 2 and {MAX_MIN_SUBJECTS} (got {min_subjects})"]
    return []


MAX_ORGANISATION_LENGTH = 200


def organisation_problems(name: str | None) -> list[str]:
    """The operator's name, shown on certificate renderings: one line of text, or none at all."""
    if name is None:
        return []
    if not name.strip() or len(name) > MAX_ORGANISATION_LENGTH or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return [f"organisation must be one line of 1 to {MAX_ORGANISATION_LENGTH} characters"]
    return []


def layout_problems(shards: int, slices: int) -> list[str]:
    """What is wrong with a shards x slices layout, one line each (empty when it is usable); raises nothing."""
    found = []
    if not 1 <= shards <= MAX_SHARDS:
        found.append(f"shards must be between 1 and {MAX_SHARDS} (got {shards})")
    if not 1 <= slices <= MAX_SLICES:
        found.append(f"slices must be between 1 and {MAX_SLICES} (got {slices})")
    return found


class ExecutorKind(StrEnum):
    """The built-in executors; `[executor] kind` may also name one a plugin registers (sisa.executor)."""

    LOCAL = "local"
    DASK = "dask"


@dataclass(frozen=True)
class ExecutorSettings:
    """Where shards train: `[executor]` in forget.toml (`local` in this process, or a Dask cluster).

    Unlike the training settings it may change at any time: it decides where, never what, is computed.
    """

    kind: str = "local"
    """A registered executor's name (sisa.executor): local, dask, or one a plugin registers."""
    scheduler: str = ""
    """tcp://HOST:PORT of a Dask scheduler, for kind = "dask"."""
    gpu: bool = False
    """Each shard task asks for the worker resource GPU=1."""
    retries: int = 2


SERVICE_DEVICES = ("auto", "cpu", "cuda")
"""forget.choices.DeviceChoice's values (that module imports this one; a test checks both agree)."""


@dataclass(frozen=True)
class ServiceDefaults:
    """`[service]` in forget.toml: defaults for `forget serve`'s options (`--request-rate` is `request_rate`).

    An option given on the command line overrides its key; a key left out (None) keeps the option's
    own default. Like `[executor]` it may change at any time: it decides how the service runs, never
    what is computed. Relative TLS paths are taken from the workspace's folder.
    """

    host: str | None = None
    port: int | None = None
    device: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    request_rate: float | None = None
    request_burst: int | None = None
    run_after_request: bool | None = None
    run_every: float | None = None

    @classmethod
    def from_toml(cls, table: Any) -> ServiceDefaults:
        """The `[service]` table's values; raises `WorkspaceError` naming the first unknown key or bad value."""
        if not isinstance(table, dict):
            raise WorkspaceError(f"{CONFIG_NAME}: [service] must be a table")
        for key, value in table.items():
            if key not in _SERVICE_KEYS:
                raise WorkspaceError(f"{CONFIG_NAME}: [service] has no key {key!r} (keys: {', '.join(_SERVICE_KEYS)})")
            expected, usable = _SERVICE_KEYS[key]
            if not usable(value):
                raise WorkspaceError(f"{CONFIG_NAME}: [service] {key} must be {expected} (got {value!r})")
        floats = {key: float(table[key]) for key in ("request_rate", "run_every") if key in table}
        return cls(**{**table, **floats})

    def to_toml(self) -> dict[str, Any]:
        """The keys that are set, for forget.toml (empty: no `[service]` table); raises nothing."""
        return {key: value for key, value in asdict(self).items() if value is not None}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _one_line(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and value.isprintable()


_SERVICE_KEYS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "host": ("an address or a host name", lambda v: _one_line(v) and not any(ch.isspace() for ch in v)),
    "port": ("an integer from 0 to 65535", lambda v: _integer(v) and 0 <= v <= 65535),
    "device": (f"one of {', '.join(SERVICE_DEVICES)}", lambda v: isinstance(v, str) and v in SERVICE_DEVICES),
    "tls_cert": ("a file's path", _one_line),
    "tls_key": ("a file's path", _one_line),
    "request_rate": ("a number above 0 (calls per second per token)", lambda v: _finite(v) and v > 0),
    "request_burst": ("an integer of at least 1", lambda v: _integer(v) and v >= 1),
    "run_after_request": ("true or false", lambda v: isinstance(v, bool)),
    "run_every": ("a number of seconds, 0 or more (0: no schedule)", lambda v: _finite(v) and v >= 0),
}
"""Each `[service]` key: what it must be, for the message, and the check."""


DEFAULT_ANCHOR = "ledger-anchor.jsonl"
DEFAULT_WITNESS_TIMEOUT = 5.0


@dataclass(frozen=True)
class WitnessSettings:
    """A C2SP witness that cosigns this workspace's heads (`[[ledger.witnesses]]`)."""

    url: str
    """Its submission prefix: `POST <url>/add-checkpoint`."""
    key: str
    """Its verifier key, `name+keyid+base64(0x04 || Ed25519 key)` (`forget witness init` prints it)."""

    @property
    def name(self) -> str:
        """The witness's name: its verifier key's part before the first `+`."""
        return self.key.split("+", 1)[0]


@dataclass(frozen=True)
class WorkspaceConfig:
    """forget.toml as values: the layout, seed and ledger origin, the settings, and the feature schema.

    Read by `read_config`, written atomically by `write_config`; `from_toml` checks every value and
    raises `WorkspaceError` (exit 3) for a file it cannot use.
    """

    shards: int
    slices: int
    seed: int
    origin: str
    """The ledger's name: the origin line of its signed checkpoints, unique per workspace."""
    database: str = DEFAULT_DATABASE
    placement: PlacementMode = PlacementMode.SUBJECT
    training: TrainingSettings = field(default_factory=TrainingSettings)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    checkpoints: str = "checkpoints"
    """The checkpoint store: a folder (relative to the workspace) or an fsspec URL such as s3://bucket/path."""
    schema: Schema | None = None
    min_subjects: int = DEFAULT_MIN_SUBJECTS
    """k: a category or label class enters the schema only if this many distinct subjects hold it."""
    identity: IdentityForm = field(default_factory=IdentityForm)
    """The canonical form of subject ids (forget.subjects.identity); fixed at init, since it keys every record."""
    anchor: str = DEFAULT_ANCHOR
    """Where signed heads are kept outside the database: a file (relative to the workspace) or an fsspec URL."""
    witnesses: tuple[WitnessSettings, ...] = ()
    witness_timeout: float = DEFAULT_WITNESS_TIMEOUT
    """Seconds to wait for a witness before signing goes on without its cosignature."""
    organisation: str | None = None
    """`[workspace] organisation`: who operates this workspace, named on certificate renderings
    (never signed: the certificate names the key and the log, not a legal entity)."""
    service: ServiceDefaults = field(default_factory=ServiceDefaults)
    """`[service]`: the defaults of `forget serve`'s options (kept when forget rewrites the file)."""

    def with_schema(self, schema: Schema) -> WorkspaceConfig:
        """The same config with `schema` as its feature schema (the first ingest's, or a re-derived one)."""
        return replace(self, schema=schema)

    def to_toml(self) -> dict[str, Any]:
        """The config as forget.toml's tables (format 1), ready for `tomli_w`; raises nothing."""
        data: dict[str, Any] = {
            "format": CONFIG_FORMAT,
            "workspace": {
                "shards": self.shards,
                "slices": self.slices,
                "seed": self.seed,
                "placement": self.placement.value,
                "database": self.database,
                "checkpoints": self.checkpoints,
                "min_subjects_per_category": self.min_subjects,
                **({"organisation": self.organisation} if self.organisation is not None else {}),
            },
            "executor": {
                "kind": str(self.executor.kind),
                "scheduler": self.executor.scheduler,
                "gpu": self.executor.gpu,
                "retries": self.executor.retries,
            },
            "ledger": {
                "origin": self.origin,
                "anchor": self.anchor,
                "witness_timeout": self.witness_timeout,
                "witnesses": [{"url": w.url, "key": w.key} for w in self.witnesses],
            },
            "identity": {"case": self.identity.case.value, "email": self.identity.email.value},
            "training": {
                "model": self.training.model,
                "epochs": self.training.epochs,
                "batch_size": self.training.batch_size,
                "lr": self.training.lr,
                "optimizer": self.training.optimizer,
                "schedule": self.training.schedule.value,
                "threads": self.training.threads,
                "aggregation": self.training.aggregation,
            },
        }
        if self.service.to_toml():
            data["service"] = self.service.to_toml()
        if self.schema is not None:
            data["schema"] = self.schema.to_dict()
        return data

    @classmethod
    def from_toml(cls, data: dict[str, Any]) -> WorkspaceConfig:
        """The config in parsed forget.toml tables, every value checked.

        Raises `WorkspaceError` (exit 3) for another format, a missing or mistyped field, or a value out of
        range (the first problem, in one line).
        """
        if data.get("format") != CONFIG_FORMAT:
            raise WorkspaceError(f"{CONFIG_NAME} has format {data.get('format')!r}; this forget reads {CONFIG_FORMAT}")
        try:
            ws = data["workspace"]
            tr = data.get("training", {})
            ex = data.get("executor", {})
            config = cls(
                shards=int(ws["shards"]),
                slices=int(ws["slices"]),
                seed=int(ws["seed"]),
                origin=str(data["ledger"]["origin"]),
                database=str(ws.get("database", DEFAULT_DATABASE)),
                placement=PlacementMode(ws.get("placement", PlacementMode.SUBJECT.value)),
                training=TrainingSettings(
                    model=str(tr.get("model", "mlp")),
                    epochs=float(tr.get("epochs", 10.0)),
                    batch_size=int(tr.get("batch_size", 128)),
                    lr=float(tr.get("lr", 1e-3)),
                    optimizer=str(tr.get("optimizer", "adam")),
                    schedule=Schedule(tr.get("schedule", Schedule.BALANCED.value)),
                    threads=int(tr.get("threads", 1)),
                    # Workspaces written before the setting existed served the majority vote.
                    aggregation=str(tr.get("aggregation", "vote")),
                ),
                executor=ExecutorSettings(
                    kind=str(ex.get("kind", "local")),
                    scheduler=str(ex.get("scheduler", "")),
                    gpu=bool(ex.get("gpu", False)),
                    retries=int(ex.get("retries", 2)),
                ),
                checkpoints=str(ws.get("checkpoints", "checkpoints")),
                min_subjects=int(ws.get("min_subjects_per_category", DEFAULT_MIN_SUBJECTS)),
                schema=Schema.from_dict(data["schema"]) if "schema" in data else None,
                identity=IdentityForm.from_dict(dict(data.get("identity", {}))),
                anchor=str(data["ledger"].get("anchor", DEFAULT_ANCHOR)),
                witnesses=tuple(
                    WitnessSettings(url=str(w["url"]), key=str(w["key"])) for w in data["ledger"].get("witnesses", [])
                ),
                witness_timeout=float(data["ledger"].get("witness_timeout", DEFAULT_WITNESS_TIMEOUT)),
                organisation=str(ws.get("organisation", "")).strip() or None,
                service=ServiceDefaults.from_toml(data.get("service", {})),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise WorkspaceError(f"{CONFIG_NAME} is malformed: {error}") from error
        problems = layout_problems(config.shards, config.slices) + config.training.problems()
        problems += min_subjects_problems(config.min_subjects) + organisation_problems(config.organisation)
        if problems:
            raise WorkspaceError(f"{CONFIG_NAME}: {problems[0]}")
        return config


def read_config(path: Path) -> WorkspaceConfig:
    """The config in the forget.toml at `path`.

    Raises `WorkspaceError` (exit 3) when the file does not exist, is not TOML, or is not a valid config.
    """
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise WorkspaceError(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise WorkspaceError(f"{path} is not valid TOML: {error}") from error
    return WorkspaceConfig.from_toml(data)


def write_config(path: Path, config: WorkspaceConfig) -> None:
    """Atomic: a crash leaves the old file or the new one, never half of each."""
    text = (
        "# forget workspace. [schema] is the feature encoding, derived by its rule from the data and"
        " re-derived by `forget run` after each erasure: never edit it once data is in.\n"
    )
    text += tomli_w.dumps(config.to_toml())
    write_atomically(path, text.encode())
