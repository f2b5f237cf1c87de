"""A workspace: one deployment's folder (config, keys, checkpoint store, database URL).

`init_workspace` creates one and `open_workspace` opens it; both take the folder as a str or a
Path. Settings are given as keyword arguments, `init_workspace("ws", shards=3, epochs=2)`, or as
an `InitOptions` (with its `TrainingSettings`), or both (the keywords win).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import forget
from forget.data.schema import DEFAULT_MIN_SUBJECTS
from forget.errors import InputError, WorkspaceError
from forget.store.datastore import open_datastore, resolve_url
from forget.store.interface import Store
from forget.subjects.identity import IdentityForm
from forget.subjects.pseudonym import Pseudonymiser, generate_key_file, load_key_file
from forget.workspace.config import (
    CONFIG_NAME,
    DEFAULT_DATABASE,
    TrainingSettings,
    WorkspaceConfig,
    layout_problems,
    min_subjects_problems,
    read_config,
    write_config,
)
from forget.workspace.keys import (
    INITIALIZED,
    KEYS_DIR,
    PSEUDONYM_KEY,
    PUBLIC_KEY,
    SIGNING_KEY,
    KeyMismatchError,
    Pins,
    key_file_warnings,
    public_key_fingerprint,
)
from sisa.placement import PlacementMode
from sisa.schedule import Schedule

if TYPE_CHECKING:
    # Keys and the ledger pull in `cryptography`; commands such as `forget status` never need them.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.anchor import Anchor
    from ledger.log import Ledger

ENV_WORKSPACE = "FORGET_WORKSPACE"
CHECKPOINTS_DIR = "checkpoints"


DEFAULT_SHARDS = 5
DEFAULT_SLICES = 4
"""`forget init`'s layout without a plan (docs/benchmarks.md measured the trade-off)."""


@dataclass(frozen=True)
class InitOptions:
    """Everything `init_workspace` fixes for the workspace's life: layout, seed, database, keys, training.

    The defaults are `forget init`'s. `training` holds the model and optimiser settings
    (`TrainingSettings`: model, epochs, batch_size, lr, ...); `with_settings` changes any field of
    either by name.
    """

    shards: int = DEFAULT_SHARDS
    slices: int = DEFAULT_SLICES
    seed: int | None = None
    """The root seed of placement and training (random when None; recorded in forget.toml)."""
    database: str = DEFAULT_DATABASE
    placement: PlacementMode = PlacementMode.SUBJECT
    training: TrainingSettings = field(default_factory=TrainingSettings)
    keys_from: str | os.PathLike[str] | None = None
    """Another workspace whose keys this one reuses (`init --keys-from`: replays, equivalence checks)."""
    passphrase: bytes | None = None
    """Encrypts the new signing key (PKCS#8, best available encryption); ignored with keys_from."""
    identity: IdentityForm = field(default_factory=IdentityForm)
    min_subjects: int = DEFAULT_MIN_SUBJECTS
    """k: a category or label class enters the schema only if this many subjects hold it."""
    plan: dict[str, Any] | None = None
    """`forget.evaluation.plan.frozen_settings`' record of the plan the settings came from, logged at init."""

    def with_settings(self, **settings: Unpack[InitSettings]) -> InitOptions:
        """These options with fields changed by name: those of `InitOptions`, or of its `TrainingSettings`.

        `options.with_settings(shards=3, epochs=2, model="tanh-64")`. An unknown name raises
        `TypeError`, as a misspelt keyword argument does; the values are checked by `init_workspace`.
        """
        unknown = sorted(set(settings) - _OPTION_NAMES - _TRAINING_NAMES)
        if unknown:
            raise TypeError(
                f"unknown workspace setting {unknown[0]!r}: give a field of InitOptions or TrainingSettings"
            )
        changes: dict[str, Any] = dict(settings)
        training = changes.pop("training", self.training)
        training_changes = {name: changes.pop(name) for name in list(changes) if name in _TRAINING_NAMES}
        return replace(self, **changes, training=replace(training, **training_changes))


class InitSettings(TypedDict, total=False):
    """`init_workspace`'s keyword arguments: any field of `InitOptions` or of `TrainingSettings`, by name."""

    shards: int
    slices: int
    seed: int | None
    database: str
    placement: PlacementMode
    training: TrainingSettings
    keys_from: str | os.PathLike[str] | None
    passphrase: bytes | None
    identity: IdentityForm
    min_subjects: int
    plan: dict[str, Any] | None
    model: str
    epochs: float
    batch_size: int
    lr: float
    optimizer: str
    schedule: Schedule
    threads: int
    aggregation: str


_OPTION_NAMES = frozenset(f.name for f in fields(InitOptions))
_TRAINING_NAMES = frozenset(f.name for f in fields(TrainingSettings))


class Workspace:
    """One deployment: its folder, config and keys, its store and its ledger.

    The store (`forget.store.interface.Store`) and the ledger are opened from the config when
    first used; `store` and `ledger` hand in others instead (the tests' in-memory fakes).
    """

    def __init__(
        self,
        root: Path,
        config: WorkspaceConfig,
        passphrase: bytes | None = None,
        *,
        store: Store | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.root = root
        self.config = config
        self._pin_rows: dict[str, str] = {}
        self.passphrase = passphrase
        """For an encrypted signing key; the CLI reads it from $FORGET_KEY_PASSPHRASE."""
        self._store = store
        self._ledger = ledger

    @property
    def config_path(self) -> Path:
        """The workspace's forget.toml."""
        return self.root / CONFIG_NAME

    @property
    def keys_dir(self) -> Path:
        """The folder of the workspace's key files (mode 0700)."""
        return self.root / KEYS_DIR

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the data store, a relative SQLite path resolved against the workspace."""
        return resolve_url(self.config.database, self.root)

    @cached_property
    def datastore(self) -> Store:
        """The data store, opened on first use and its schema revision checked.

        Raises `WorkspaceError` (exit 3) when the database is missing or at another schema revision
        (`forget.store.migrate`).
        """
        store = self._store if self._store is not None else open_datastore(self.database_url, must_exist=True)
        store.check_schema()
        # Read now, before any transaction: on SQLite a read on a second connection while this
        # process holds the write lock (BEGIN IMMEDIATE) would wait for itself.
        self._pin_rows = store.pins()
        return store

    @cached_property
    def pins(self) -> Pins:
        """What the workspace was created with, as its database records it."""
        _ = self.datastore
        return Pins.from_rows(self._pin_rows)

    @cached_property
    def pseudonymiser(self) -> Pseudonymiser:
        """The keyed hash of subject and record ids, from the pseudonymisation key file.

        Raises `KeyMismatchError` (a `WorkspaceError`, exit 3) when the key or the identity form is not
        the one pinned at init, and `WorkspaceError` when the key file cannot be read.
        """
        self._check_identity()
        pseudonymiser = load_key_file(self.keys_dir / PSEUDONYM_KEY, self.config.identity)
        if pseudonymiser.fingerprint() != self.pins.pseudonym_key:
            raise KeyMismatchError(
                f"{KEYS_DIR}/{PSEUDONYM_KEY} is not the key this workspace was created with (fingerprint"
                f" {pseudonymiser.fingerprint()[:16]}, pinned {self.pins.pseudonym_key[:16]}): restore the right key"
            )
        return pseudonymiser

    def public_key_pem(self) -> bytes:
        """The signing key's public half as PEM bytes; raises `OSError` when the file is missing."""
        return (self.keys_dir / PUBLIC_KEY).read_bytes()

    def _check_public_key(self) -> None:
        path = self.keys_dir / PUBLIC_KEY
        try:
            found = public_key_fingerprint(path.read_bytes())
        except OSError as error:
            raise WorkspaceError(f"cannot read {KEYS_DIR}/{PUBLIC_KEY}: {error.strerror}") from error
        except ValueError as error:
            raise WorkspaceError(f"{KEYS_DIR}/{PUBLIC_KEY} is not an Ed25519 public key: {error}") from error
        if found != self.pins.signing_key:
            raise KeyMismatchError(
                f"{KEYS_DIR}/{PUBLIC_KEY} is not the key this workspace was created with (sha256 {found[:16]},"
                f" pinned {self.pins.signing_key[:16]}): restore the right key"
            )

    def _check_identity(self) -> None:
        if self.config.identity != self.pins.identity:
            raise KeyMismatchError(
                f"{CONFIG_NAME} [identity] ({self.config.identity.describe()}) differs from the form this workspace"
                f" was created with ({self.pins.identity.describe()}); changing it would re-key every record"
            )

    def check_keys(self) -> list[str]:
        """Stop (exit 3) before anything is written if a key file or the identity form was swapped;
        returns warnings about key files that others can read."""
        _ = self.pseudonymiser
        self._check_public_key()
        return key_file_warnings(self.keys_dir)

    @cached_property
    def ledger(self) -> Ledger:
        """The workspace's ledger (`ledger.log.Ledger`), opened on first use.

        Raises `KeyMismatchError` (exit 3) when the public key file is not the pinned one, and
        `WorkspaceError` when it cannot be read.
        """
        from ledger.keys import load_public_key
        from ledger.log import Ledger

        if self._ledger is not None:
            return self._ledger
        self._check_public_key()
        return Ledger(self.config.origin, load_public_key(self.keys_dir / PUBLIC_KEY), self.anchor)

    @cached_property
    def anchor(self) -> Anchor:
        """Signed heads kept outside the database (`[ledger] anchor`: a file here, or an fsspec URL)."""
        from ledger.anchor import open_anchor

        return open_anchor(self.config.anchor, self.root)

    def signing_key(self) -> Ed25519PrivateKey:
        """The Ed25519 signing key, decrypted with `passphrase` when it is encrypted.

        Raises `KeyMismatchError` (exit 3) when it is not the key pinned at init; a missing file or a
        wrong passphrase raises `ledger.errors.LedgerError` (`forget.errors.translated()` makes it a
        `WorkspaceError`).
        """
        from cryptography.hazmat.primitives import serialization

        from ledger.keys import load_private_key

        key = load_private_key(self.keys_dir / SIGNING_KEY, self.passphrase)
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if hashlib.sha256(raw).hexdigest() != self.pins.signing_key:
            raise KeyMismatchError(
                f"{KEYS_DIR}/{SIGNING_KEY} is not the signing key this workspace was created with: restore the"
                " right key (a head signed with another key would break `forget ledger verify` for good)"
            )
        return key

    def save_config(self, config: WorkspaceConfig) -> None:
        """Write `config` to forget.toml atomically and use it from now on; raises `OSError` if it cannot."""
        write_config(self.config_path, config)
        self.config = config


def init_workspace(
    root: str | os.PathLike[str], options: InitOptions | None = None, **settings: Unpack[InitSettings]
) -> Workspace:
    """Create the folder's config, keys and database; refuses a folder that already holds a workspace.

    `root` is a str or a Path. The settings are `options` (default: `forget init`'s) with any
    keyword arguments applied by `InitOptions.with_settings`:
    `init_workspace("ws", shards=3, slices=2, seed=7, epochs=2, model="tanh-64")`.

    Raises `InputError` (exit 2) for a setting out of range or a `keys_from` without keys,
    `WorkspaceError` (exit 3) when the folder or the database already holds a workspace, and
    `TypeError` for a keyword that names no setting. Nothing is left behind on failure (no keys,
    no anchor).
    """
    from cryptography.hazmat.primitives import serialization

    from ledger.keys import generate_signing_key, load_private_key, public_key_pem, write_private_key
    from ledger.log import Ledger

    options = (options or InitOptions()).with_settings(**settings)
    keys_from = Path(options.keys_from) if options.keys_from is not None else None
    root = Path(root)
    problems = (
        layout_problems(options.shards, options.slices)
        + options.training.problems()
        + min_subjects_problems(options.min_subjects)
    )
    if problems:
        raise InputError(f"--{problems[0].replace('_', '-')}")
    if (root / CONFIG_NAME).exists():
        raise WorkspaceError(f"{root} already holds a workspace ({CONFIG_NAME} exists)")
    if keys_from is not None and not (keys_from / KEYS_DIR / PSEUDONYM_KEY).is_file():
        raise InputError(f"--keys-from {keys_from} is not a workspace with keys")
    config = WorkspaceConfig(
        shards=options.shards,
        slices=options.slices,
        seed=options.seed if options.seed is not None else secrets.randbelow(2**31),
        origin=f"forget.local/{secrets.token_hex(8)}",
        database=options.database,
        placement=options.placement,
        training=options.training,
        identity=options.identity,
        min_subjects=options.min_subjects,
    )
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)  # the folder holds keys and personal data: nobody else lists or reads it
    keys = root / KEYS_DIR
    created_keys = not keys.exists()
    created_anchor: Anchor | None = None
    try:
        keys.mkdir(mode=0o700, exist_ok=False)
        if keys_from is not None:
            for name in (PSEUDONYM_KEY, SIGNING_KEY, PUBLIC_KEY):
                target = keys / name
                shutil.copyfile(keys_from / KEYS_DIR / name, target)
                os.chmod(target, 0o644 if name == PUBLIC_KEY else 0o600)
        else:
            generate_key_file(keys / PSEUDONYM_KEY)
            signing = generate_signing_key()
            write_private_key(keys / SIGNING_KEY, signing, options.passphrase)
            (keys / PUBLIC_KEY).write_bytes(public_key_pem(signing.public_key()))
        (root / CHECKPOINTS_DIR).mkdir(mode=0o700, exist_ok=True)
        store: Store = open_datastore(resolve_url(config.database, root), must_exist=False)
        existing = store.schema_revision()
        if existing is not None:
            store.close()
            raise WorkspaceError(
                f"the database {config.database} already holds a forget workspace (schema {existing});"
                " give each workspace a database of its own"
            )
        store.create_schema()
        signing = load_private_key(keys / SIGNING_KEY, options.passphrase)
        raw_public = signing.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        pins = Pins(
            pseudonym_key=load_key_file(keys / PSEUDONYM_KEY, config.identity).fingerprint(),
            signing_key=hashlib.sha256(raw_public).hexdigest(),
            identity=config.identity,
        )
        # The anchor first: the ledger's first entry is recorded there as appended by forget.
        from ledger.anchor import open_anchor

        anchor = open_anchor(config.anchor, root)
        anchor.create(config.origin)
        created_anchor = anchor
        with store.transaction() as tx:
            store.set_pins(tx, pins.rows())
            Ledger(config.origin, signing.public_key(), anchor).append(
                tx,
                [
                    (
                        INITIALIZED,
                        {
                            "origin": config.origin,
                            "identity_form": config.identity.to_dict(),
                            "pseudonym_key_fingerprint": pins.pseudonym_key,
                            "signing_key_sha256": pins.signing_key,
                            "forget_version": forget.__version__,
                            **({"plan": options.plan} if options.plan is not None else {}),
                        },
                    )
                ],
            )
        write_config(root / CONFIG_NAME, config)
    except BaseException:
        if created_keys:
            shutil.rmtree(keys, ignore_errors=True)
        from ledger.anchor import FileAnchor

        if isinstance(created_anchor, FileAnchor):  # an object-store anchor is never deleted
            created_anchor.path.unlink(missing_ok=True)
        raise
    from forget.training.lineage import sign_head

    store.close()
    workspace = Workspace(root, config, options.passphrase)
    sign_head(workspace)
    return workspace


def open_workspace(root: str | os.PathLike[str], passphrase: bytes | None = None) -> Workspace:
    """The workspace at `root` (a str or a Path); its keys are checked against their pins when first
    used (`Workspace.check_keys()` checks them all at once). `passphrase` unlocks an encrypted
    signing key.

    Raises `WorkspaceError` (exit 3) when `root` holds no forget.toml or a malformed one.
    """
    root = Path(root)
    return Workspace(root, read_config(root / CONFIG_NAME), passphrase)


def locate_workspace(option: str | os.PathLike[str] | None, cwd: Path | None = None) -> Path:
    """The workspace folder: `--workspace` (`option`), then `$FORGET_WORKSPACE`, then the current directory.

    Raises `WorkspaceError` (exit 3) when the folder found holds no forget.toml, naming where it came from.
    """
    if option is not None:
        candidates = [(Path(option), "--workspace")]
    elif os.environ.get(ENV_WORKSPACE):
        candidates = [(Path(os.environ[ENV_WORKSPACE]), f"${ENV_WORKSPACE}")]
    else:
        try:
            candidates = [(cwd or Path.cwd(), "the current directory")]
        except FileNotFoundError:
            raise WorkspaceError("the current directory no longer exists: pass --workspace DIR") from None
    path, source = candidates[0]
    if not (path / CONFIG_NAME).is_file():
        raise WorkspaceError(
            f"no forget workspace at {path} (from {source}): run `forget init DIR` or pass --workspace DIR"
        )
    return path.resolve()
