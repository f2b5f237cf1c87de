"""Ed25519 signing keys as PEM files (PKCS#8, mode 0600, optional passphrase)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import KeyFileError


def generate_signing_key() -> Ed25519PrivateKey:
    """A new Ed25519 key from the operating system's randomness: a log's or a witness's signing key.

    Kept behind this module so that every key forget makes is of the one algorithm its notes,
    certificates and cosignatures verify. Raises nothing.
    """
    return Ed25519PrivateKey.generate()


def write_private_key(path: Path, key: Ed25519PrivateKey, passphrase: bytes | None = None) -> None:
    """Created with mode 0600 from the start, so the key is never readable by others, even briefly."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    """The key in PEM (SubjectPublicKeyInfo): the file an operator hands to auditors with the certificates.

    Raises nothing.
    """
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """The Ed25519 signing key in the PEM file at `path`, decrypted with `passphrase` if it has one.

    Raises `KeyFileError` if the file cannot be read, needs a passphrase it was not given (or was
    given one it does not need), is not a PEM private key, the passphrase is wrong, or the key is
    not Ed25519: every way a key file can be unusable is one error for the person.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"cannot read signing key {path}: {error.strerror}") from error
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as error:
        raise KeyFileError(f"signing key {path} needs a passphrase (or was given one it does not need)") from error
    except (ValueError, UnsupportedAlgorithm) as error:
        raise KeyFileError(f"{path} is not a readable PEM private key, or the passphrase is wrong") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in the PEM file at `path`, to verify what its private key signed.

    Raises `KeyFileError` if the file cannot be read or does not hold an Ed25519 public key.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"cannot read public key {path}: {error.strerror}") from error
    return load_public_key_bytes(data, str(path))


def load_public_key_bytes(data: bytes, name: str = "the public key") -> Ed25519PublicKey:
    """The Ed25519 public key in PEM `data` (a file already read, or bytes from elsewhere); `name` names it in messages.

    Raises `KeyFileError` if the bytes are not a PEM public key, or hold a key of another algorithm.
    """
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise KeyFileError(f"{name} is not a PEM public key") from error
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{name} holds a {type(key).__name__}, not an Ed25519 public key")
    return key
