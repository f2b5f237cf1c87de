"""A workspace: one deployment's folder (config, keys, checkpoint store, database URL)."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from forget.config import (
    CONFIG_NAME,
    DEFAULT_DATABASE,
    TrainingSettings,
    WorkspaceConfig,
    read_config,
    write_config,
)
from forget.datastore import DataStore, create_engine, resolve_url
from forget.errors import InputError, JobLockedError, WorkspaceError
from forget.migrate import current_revision
from forget.pseudonym import Pseudonymiser, generate_key_file, load_key_file
from sisa.placement import PlacementMode
from sisa.store import BlobStore, open_store

if TYPE_CHECKING:
    # Keys and the ledger pull in `cryptography`; commands such as `forget status` never need them.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.log import Ledger

ENV_WORKSPACE = "FORGET_WORKSPACE"
KEYS_DIR = "keys"
PSEUDONYM_KEY = "pseudonym.key"
SIGNING_KEY = "signing.pem"
PUBLIC_KEY = "signing.pub.pem"
CHECKPOINTS_DIR = "checkpoints"


@dataclass(frozen=True)
class InitOptions:
    shards: int
    slices: int
    seed: int | None = None
    database: str = DEFAULT_DATABASE
    placement: PlacementMode = PlacementMode.SUBJECT
    training: TrainingSettings = field(default_factory=TrainingSettings)
    keys_from: Path | None = None
    passphrase: bytes | None = None
    """Encrypts the new signing key (PKCS#8, best available encryption); ignored with keys_from."""


class Workspace:
    def __init__(self, root: Path, config: WorkspaceConfig, passphrase: bytes | None = None) -> None:
        self.root = root
        self.config = config
        self.passphrase = passphrase
        """For an encrypted signing key; the CLI reads it from $FORGET_KEY_PASSPHRASE."""

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def keys_dir(self) -> Path:
        return self.root / KEYS_DIR

    @property
    def database_url(self) -> str:
        return resolve_url(self.config.database, self.root)

    @cached_property
    def datastore(self) -> DataStore:
        store = DataStore(create_engine(self.database_url, must_exist=True))
        store.check_schema()
        return store

    @cached_property
    def pseudonymiser(self) -> Pseudonymiser:
        return load_key_file(self.keys_dir / PSEUDONYM_KEY)

    def public_key_pem(self) -> bytes:
        return (self.keys_dir / PUBLIC_KEY).read_bytes()

    @cached_property
    def ledger(self) -> Ledger:
        from ledger.keys import load_public_key
        from ledger.log import Ledger

        return Ledger(self.config.origin, load_public_key(self.keys_dir / PUBLIC_KEY))

    def signing_key(self) -> Ed25519PrivateKey:
        from ledger.keys import load_private_key

        return load_private_key(self.keys_dir / SIGNING_KEY, self.passphrase)

    def save_config(self, config: WorkspaceConfig) -> None:
        write_config(self.config_path, config)
        self.config = config


def init_workspace(root: Path, options: InitOptions) -> Workspace:
    """Create the folder's config, keys and database; refuses a folder that already holds a workspace."""
    from ledger.keys import generate_signing_key, load_private_key, public_key_pem, write_private_key

    if options.shards < 1 or options.slices < 1:
        raise InputError(f"--shards and --slices must be at least 1 (got {options.shards} and {options.slices})")
    if options.training.epochs <= 0 or options.training.batch_size < 1 or options.training.lr <= 0:
        raise InputError("--epochs and --lr must be positive and --batch-size at least 1")
    if (root / CONFIG_NAME).exists():
        raise WorkspaceError(f"{root} already holds a workspace ({CONFIG_NAME} exists)")
    if options.keys_from is not None and not (options.keys_from / KEYS_DIR / PSEUDONYM_KEY).is_file():
        raise InputError(f"--keys-from {options.keys_from} is not a workspace with keys")
    config = WorkspaceConfig(
        shards=options.shards,
        slices=options.slices,
        seed=options.seed if options.seed is not None else secrets.randbelow(2**31),
        origin=f"forget.local/{secrets.token_hex(8)}",
        database=options.database,
        placement=options.placement,
        training=options.training,
    )
    root.mkdir(parents=True, exist_ok=True)
    keys = root / KEYS_DIR
    created_keys = not keys.exists()
    try:
        keys.mkdir(mode=0o700, exist_ok=False)
        if options.keys_from is not None:
            for name in (PSEUDONYM_KEY, SIGNING_KEY, PUBLIC_KEY):
                target = keys / name
                shutil.copyfile(options.keys_from / KEYS_DIR / name, target)
                os.chmod(target, 0o644 if name == PUBLIC_KEY else 0o600)
        else:
            generate_key_file(keys / PSEUDONYM_KEY)
            signing = generate_signing_key()
            write_private_key(keys / SIGNING_KEY, signing, options.passphrase)
            (keys / PUBLIC_KEY).write_bytes(public_key_pem(signing.public_key()))
        load_private_key(keys / SIGNING_KEY, options.passphrase)
        (root / CHECKPOINTS_DIR).mkdir(exist_ok=True)
        engine = create_engine(resolve_url(config.database, root), must_exist=False)
        existing = current_revision(engine)
        if existing is not None:
            engine.dispose()
            raise WorkspaceError(
                f"the database {config.database} already holds a forget workspace (schema {existing});"
                " give each workspace a database of its own"
            )
        DataStore(engine).create_schema()
        write_config(root / CONFIG_NAME, config)
    except BaseException:
        if created_keys:
            shutil.rmtree(keys, ignore_errors=True)
        raise
    return Workspace(root, config, options.passphrase)


def open_workspace(root: Path, passphrase: bytes | None = None) -> Workspace:
    return Workspace(root, read_config(root / CONFIG_NAME), passphrase)


def locate_workspace(option: Path | None, cwd: Path | None = None) -> Path:
    """`--workspace`, then `$FORGET_WORKSPACE`, then the current directory."""
    if option is not None:
        candidates = [(option, "--workspace")]
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


LOCK_FILE = ".forget.lock"


@contextmanager
def job_lock(workspace: Workspace) -> Iterator[None]:
    """An exclusive lock for commands that change data or models (`run`, `train`, `ingest`).

    A file lock for one host, and on PostgreSQL an advisory lock for hosts sharing the database;
    the OS or the server releases both if the holder dies.
    """
    handle = (workspace.root / LOCK_FILE).open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobLockedError(
                "another `forget run`, `train` or `ingest` is working on this workspace; nothing was changed"
            ) from None
        with workspace.datastore.advisory_lock(f"forget-job:{workspace.config.origin}") as acquired:
            if not acquired:
                raise JobLockedError("another forget job holds this workspace's database; nothing was changed")
            yield
    finally:
        handle.close()


def checkpoint_location(workspace: Workspace) -> str:
    """The store as workers see it: an absolute folder, or the configured fsspec URL."""
    location = workspace.config.checkpoints
    return location if "://" in location else str((workspace.root / location).resolve())


def checkpoint_store(workspace: Workspace) -> BlobStore:
    return open_store(checkpoint_location(workspace))


def collect_garbage(workspace: Workspace) -> list[str]:
    """Delete every checkpoint file the current lineage does not point at (idempotent).

    After an erasure this removes whatever saw the erased records, and after a crash it removes
    a file that was stored but never recorded. Only safe under the job lock.
    """
    keep = workspace.datastore.referenced_digests()
    store = checkpoint_store(workspace)
    purged = [digest for digest in store.digests() if digest not in keep]
    for digest in purged:
        store.delete(digest)
    return purged


def purge_unreferenced(workspace: Workspace, digests: list[str]) -> list[str]:
    """Delete the given checkpoint files unless the current lineage still points at them."""
    if not digests:
        return []
    keep = workspace.datastore.referenced_digests()
    store = checkpoint_store(workspace)
    purged = [digest for digest in dict.fromkeys(digests) if digest not in keep]
    for digest in purged:
        store.delete(digest)
    return purged
