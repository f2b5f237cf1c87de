"""A C2SP witness (c2sp.org/tlog-witness): the `add-checkpoint` protocol, a witness, a client.

An operator holding its own signing key can show one history to one auditor and another to the
next; a witness with a key of its own cosigns a checkpoint only if it is consistent with the last
one it cosigned for that log, so two histories cannot both collect its cosignature.

The request body of `POST <prefix>/add-checkpoint` is an `old <size>` line, up to 63 consistency
proof lines (one base64 hash each), an empty line, then the checkpoint as a signed note. Answers:
200 with cosignature lines; 400 malformed (or old size above the checkpoint's); 403 no valid
signature by a key the witness trusts for that origin; 404 unknown origin; 409 Conflict when the
old size is not the witness's (body: its size and a newline, `Content-Type: text/x.tlog.size`);
422 when the proof does not verify, the sizes are equal but the roots differ, or an empty tree
has another root. The check and the update of a log's state happen under one lock, and the state
is on disk (atomically replaced, fsync'd) before the answer goes out, so a restarted witness
keeps it. `GET <prefix>/<sha256(origin) hex>/checkpoint` returns the last checkpoint it cosigned.

Standard library and `cryptography` only: `http.server` for the witness, `urllib` for the client.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import http.client
import ipaddress
import json
import logging
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import merkle
from ledger.cosignature import cosign, witness_verifier_key
from ledger.errors import KeyFileError, LedgerError, VerificationError
from ledger.keys import generate_signing_key, load_private_key, write_private_key
from ledger.note import NoteError, key_id, parse_verifier_key, split_note

__all__ = [
    "MAX_BODY",
    "MAX_PROOF_LINES",
    "SIZE_CONTENT_TYPE",
    "AddCheckpoint",
    "Response",
    "Witness",
    "WitnessError",
    "WitnessUnavailable",
    "make_server",
    "parse_add_checkpoint",
    "parse_checkpoint_text",
    "submit_checkpoint",
]

MAX_PROOF_LINES = 63
MAX_BODY = 1 << 16
"""Bytes; a request or an answer longer than this is refused (a checkpoint with 63 proof lines is ~4 KiB)."""
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_TEXT = "text/plain; charset=utf-8"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_MAX_SIZE = 2**64 - 1
_CONFIG = "witness.json"
_STATE = "state.json"
_KEY = "witness.pem"
_LOCK = ".lock"
_FORMAT = 1

logger = logging.getLogger("forget.audit.witness")


class WitnessError(LedgerError):
    """A witness's state folder is missing, unreadable or malformed, or a setting is refused."""


class WitnessUnavailable(LedgerError):
    """A witness could not be reached, or answered with something that is not the protocol."""


# --- the protocol ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddCheckpoint:
    """An add-checkpoint request: the size the client believes the witness has, a proof, the note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str

    def encode(self) -> bytes:
        """The request body `parse_add_checkpoint` reads: the old size line, the proof lines, an empty line, the note.

        Raises nothing; the witness checks what the body claims.
        """
        lines = [f"old {self.old_size}\n", *(base64.b64encode(h).decode("ascii") + "\n" for h in self.proof)]
        return ("".join(lines) + "\n" + self.note).encode("utf-8")


def _decimal(text: str, what: str) -> int:
    if not _DECIMAL.fullmatch(text) or int(text) > _MAX_SIZE:
        raise NoteError(f"{what} {text!r} is not a decimal number without leading zeros")
    return int(text)


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse a request body; raises `NoteError` (answered 400) for anything else."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("the request is not UTF-8") from None
    head, separator, note = text.partition("\n\n")
    if not separator:
        raise NoteError("the request has no empty line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise NoteError("the request does not start with an old size line")
    old_size = _decimal(lines[0][4:], "old size")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise NoteError(f"the request has more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in lines[1:]:
        try:
            value = base64.b64decode(line, validate=True)
        except binascii.Error:
            raise NoteError("a consistency proof line is not base64") from None
        if len(value) != merkle.HASH_SIZE or base64.b64encode(value).decode("ascii") != line:
            raise NoteError("a consistency proof line is not one canonical base64 SHA-256 hash")
        proof.append(value)
    return AddCheckpoint(old_size, tuple(proof), note)


def parse_checkpoint_text(text: str) -> tuple[str, int, bytes]:
    """Origin, size and root hash of a checkpoint's note text (extension lines allowed, as C2SP does)."""
    if not text.endswith("\n"):
        raise NoteError("the checkpoint text does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise NoteError("a checkpoint has an origin, a size and a root hash line, none empty")
    size = _decimal(lines[1], "checkpoint size")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        raise NoteError("the checkpoint root hash is not base64") from None
    if len(root) != merkle.HASH_SIZE:
        raise NoteError("the checkpoint root hash is not 32 bytes")
    return lines[0], size, root


@dataclass(frozen=True)
class Response:
    """A witness's answer, as the HTTP handler sends it and the client receives it.

    A plain value so that the protocol is tested without a socket (`Witness.add_checkpoint`
    returns one), and a client error reads the same as the server's.
    """

    status: int
    body: bytes
    content_type: str = _TEXT

    @property
    def text(self) -> str:
        """The body as text for messages; undecodable bytes become U+FFFD rather than an error."""
        return self.body.decode("utf-8", "replace")


def _answer(status: int, message: str) -> Response:
    return Response(status, (message + "\n").encode("utf-8"))


# --- the witness -------------------------------------------------------------------------------


def _write_atomically(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, fsync the folder: the old state or the new one survives a crash."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise WitnessError(f"{path} is missing: run `forget witness init` first") from None
    except (OSError, ValueError) as error:
        raise WitnessError(f"{path} is not readable witness state: {error}") from None
    if not isinstance(value, dict) or value.get("v") != _FORMAT:
        raise WitnessError(f"{path} is not witness state of format {_FORMAT}")
    return value


class Witness:
    """A witness kept in a folder: its key (`witness.pem`), the logs it serves, and its state.

    `witness.json` names the witness and, per log origin, the note verifier keys it trusts;
    `state.json` holds, per origin, the size, root and note of the last checkpoint it cosigned.
    """

    def __init__(self, folder: Path, clock: Callable[[], float] = time.time) -> None:
        self.folder = folder
        self.clock = clock
        config = _read_json(folder / _CONFIG)
        try:
            self.name = str(config["name"])
            self.logs: dict[str, tuple[str, ...]] = {
                str(origin): tuple(str(v) for v in vkeys) for origin, vkeys in dict(config["logs"]).items()
            }
        except (KeyError, TypeError, ValueError) as error:
            raise WitnessError(f"{folder / _CONFIG} is malformed: {error}") from None
        try:
            self.key: Ed25519PrivateKey = load_private_key(folder / _KEY)
        except KeyFileError as error:
            raise WitnessError(str(error)) from None
        self._lock = threading.Lock()

    @classmethod
    def create(cls, folder: Path, name: str) -> Witness:
        """A new witness with a new key; refuses a folder that already holds one."""
        witness_verifier_key(name, generate_signing_key().public_key())  # checks the name
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (folder / _CONFIG).exists() or (folder / _KEY).exists():
            raise WitnessError(f"{folder} already holds a witness")
        write_private_key(folder / _KEY, generate_signing_key())
        _write_atomically(folder / _STATE, json.dumps({"v": _FORMAT, "logs": {}}).encode())
        _write_atomically(folder / _CONFIG, json.dumps({"v": _FORMAT, "name": name, "logs": {}}, indent=2).encode())
        return cls(folder)

    @property
    def vkey(self) -> str:
        """This witness's verifier key, for the logs' users: `name+keyid+base64(0x04 || key)`."""
        return witness_verifier_key(self.name, self.key.public_key())

    def add_log(self, vkey: str, origin: str | None = None) -> str:
        """Trust the note verifier key `vkey` for the log `origin` (default: the key's name). Returns the origin."""
        name, _ = parse_verifier_key(vkey.strip())
        origin = origin or name
        with self._locked():
            config = _read_json(self.folder / _CONFIG)
            keys = list(config["logs"].get(origin, []))
            if vkey.strip() not in keys:
                keys.append(vkey.strip())
            config["logs"][origin] = keys
            _write_atomically(self.folder / _CONFIG, json.dumps(config, indent=2).encode())
        self.logs[origin] = tuple(keys)
        return origin

    def _locked(self) -> _FolderLock:
        return _FolderLock(self._lock, self.folder / _LOCK)

    def state(self) -> dict[str, dict[str, Any]]:
        """Per log origin, the size, root and note of the last checkpoint this witness cosigned.

        Read from `state.json` on every call, so a check sees what the last update made durable. Raises
        `WitnessError` if the file is missing, unreadable, or not witness state of this format.
        """
        logs: dict[str, dict[str, Any]] = _read_json(self.folder / _STATE)["logs"]
        return logs

    def _trusted_signature(self, origin: str, text: str, signatures: Sequence[tuple[str, bytes]]) -> bool:
        """True if a key trusted for `origin` signed `text`; raises `VerificationError` if one fails to."""
        trusted: dict[tuple[str, bytes], Ed25519PublicKey] = {}
        for vkey in self.logs.get(origin, ()):
            name, public_key = parse_verifier_key(vkey)
            trusted[(name, key_id(name, public_key))] = public_key
        verified = False
        for name, blob in signatures:
            signer = trusted.get((name, blob[:4]))
            if signer is None:
                continue
            try:
                signer.verify(blob[4:], text.encode("utf-8"))
            except InvalidSignature:
                raise VerificationError(f"the signature by {name} does not verify") from None
            verified = True
        return verified

    def add_checkpoint(self, body: bytes) -> Response:
        """Answer an add-checkpoint request (the HTTP status, body and content type)."""
        try:
            request = parse_add_checkpoint(body)
            text, signatures = split_note(request.note)
            origin, size, root = parse_checkpoint_text(text)
        except (NoteError, VerificationError) as error:
            return _answer(400, f"malformed request: {error}")
        if origin not in self.logs:
            return _answer(404, "unknown log")
        try:
            if not self._trusted_signature(origin, text, signatures):
                return _answer(403, "no signature by a key this witness trusts for the log")
        except VerificationError as error:
            return _answer(403, str(error))
        if request.old_size > size:
            return _answer(400, "the old size is larger than the checkpoint's")
        with self._locked():
            logs = self.state()
            known = logs.get(origin)
            known_size = int(known["size"]) if known else 0
            if request.old_size != known_size:
                return Response(409, f"{known_size}\n".encode("ascii"), SIZE_CONTENT_TYPE)
            if size == 0 and root != merkle.EMPTY_ROOT:
                return _answer(422, "an empty tree has the root hash of the empty string")
            if request.old_size == 0:
                if request.proof:
                    return _answer(422, "a consistency proof from size 0 must be empty")
            else:
                assert known is not None
                try:
                    merkle.verify_consistency(
                        known_size, size, base64.b64decode(known["root"]), root, list(request.proof)
                    )
                except (VerificationError, merkle.TreeRangeError) as error:
                    logger.warning("refused a checkpoint of %s at size %d: %s", origin, size, error)
                    return _answer(422, f"not consistent with the checkpoint of size {known_size} cosigned before")
            timestamp = max(1, int(self.clock()))
            line = cosign(text, self.name, self.key, timestamp)
            logs[origin] = {
                "size": size,
                "root": base64.b64encode(root).decode("ascii"),
                "checkpoint": request.note + line,
            }
            _write_atomically(self.folder / _STATE, json.dumps({"v": _FORMAT, "logs": logs}, indent=2).encode())
        return Response(200, line.encode("utf-8"))

    def latest(self, origin_hash: str) -> Response:
        """The last checkpoint cosigned for the log whose origin hashes to `origin_hash` (hex SHA-256)."""
        with self._locked():
            logs = self.state()
        for origin, known in logs.items():
            if hashlib.sha256(origin.encode("utf-8")).hexdigest() == origin_hash:
                return Response(200, str(known["checkpoint"]).encode("utf-8"))
        return _answer(404, "no checkpoint cosigned for that log")


class _FolderLock:
    """A thread lock and an exclusive `flock` on the folder's lock file, so that check and update
    are one step even for two witness processes sharing a folder."""

    def __init__(self, lock: threading.Lock, path: Path) -> None:
        self.lock, self.path = lock, path
        self.fd = -1

    def __enter__(self) -> None:
        self.lock.acquire()
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, *_: object) -> None:
        try:
            os.close(self.fd)
        finally:
            self.lock.release()


# --- HTTP --------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (`localhost` or a loopback address): where a witness may
    listen without `allow_remote`, and where the client bypasses proxies. A name other than
    `localhost` counts as remote (it is not resolved). Raises nothing.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], witness: Witness) -> None:
        self.witness = witness
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server_version = "forget-witness"
    protocol_version = "HTTP/1.1"  # keep-alive, as the protocol recommends
    server: _Server

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def do_POST(self) -> None:
        if urllib.parse.urlsplit(self.path).path != "/add-checkpoint":
            self._send(_answer(404, "not found"))
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._send(_answer(411, "a Content-Length is required"))
            return
        if int(length) > MAX_BODY:
            self.close_connection = True
            self._send(_answer(413, f"the request is larger than {MAX_BODY} bytes"))
            return
        self._send(self.server.witness.add_checkpoint(self.rfile.read(int(length))))

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        if len(parts) == 2 and parts[1] == "checkpoint" and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            self._send(self.server.witness.latest(parts[0]))
        else:
            self._send(_answer(404, "not found"))

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


def make_server(witness: Witness, host: str, port: int, allow_remote: bool = False) -> ThreadingHTTPServer:
    """A threaded HTTP server for `witness`; refuses a non-loopback address unless `allow_remote`."""
    if not allow_remote and not is_loopback(host):
        raise WitnessError(
            f"refusing to listen on {host}: a witness serves loopback unless allowed to listen elsewhere"
            " (--allow-remote), normally behind a TLS reverse proxy"
        )
    try:
        return _Server((host, port), witness)
    except OSError as error:
        raise WitnessError(f"cannot listen on {host}:{port}: {error.strerror}") from None


# --- the client --------------------------------------------------------------------------------


def _opener(url: str) -> urllib.request.OpenerDirector:
    host = urllib.parse.urlsplit(url).hostname or ""
    if is_loopback(host):  # never send a loopback request through a proxy from the environment
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def submit_checkpoint(url: str, request: AddCheckpoint, timeout: float) -> Response:
    """POST `request` to `<url>/add-checkpoint`; raises `WitnessUnavailable` if there is no HTTP answer."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise WitnessUnavailable(f"witness URL {url} is not http:// or https://")
    target = url.rstrip("/") + "/add-checkpoint"
    headers: Mapping[str, str] = {"Content-Type": _TEXT}
    prepared = urllib.request.Request(target, data=request.encode(), method="POST", headers=dict(headers))
    try:
        with _opener(url).open(prepared, timeout=timeout) as answer:
            return Response(answer.status, answer.read(MAX_BODY), answer.headers.get_content_type())
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, error.read(MAX_BODY), error.headers.get_content_type())
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        raise WitnessUnavailable(f"the witness at {url} is unreachable ({reason})") from None
