"""The Merkle tree of RFC 9162 section 2.1: hashes, proofs, and their verification.

Pure functions over hashes; no I/O. Each proof generator comes in two forms:

- a callback form (`root_hash_from`, `inclusion_proof_from`, `consistency_proof_from`) that asks
  `subtree(start, end)` for MTH(D[start:end]) and calls it only for perfect, aligned subtrees
  (`end - start` a power of two and `start` a multiple of it). A store that keeps the hashes of
  those subtrees answers a proof for a tree of n leaves with O(log n) reads; the ranges on the
  right edge of a tree that are not perfect are decomposed here with `node_hash`.
- a list form (`root_hash`, `inclusion_proof`, `consistency_proof`) over all the leaf hashes,
  which wraps the callback form.

Verification follows the algorithms of RFC 9162 sections 2.1.3.2 and 2.1.4.2 and raises
`VerificationError` with a one-line reason; it never returns a bool.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from ledger.errors import LedgerError, VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "SubtreeHash",
    "TreeRangeError",
    "consistency_proof",
    "consistency_proof_from",
    "inclusion_proof",
    "inclusion_proof_from",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "root_hash_from",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in a SHA-256 digest, the size of every hash in the tree."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() (RFC 9162 section 2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

SubtreeHash = Callable[[int, int], bytes]
"""`subtree(start, end)` returns MTH(D[start:end]) for a perfect, aligned subtree."""


class TreeRangeError(LedgerError, ValueError):
    """A root or proof was asked for an index or a size that the tree does not have."""


def leaf_hash(data: bytes) -> bytes:
    """Return the hash of a leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Return the largest power of two strictly less than `n` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_hash(start: int, end: int, subtree: SubtreeHash) -> bytes:
    """Return MTH(D[start:end]) for a range that the MTH recursion of some tree produces.

    Such a range is either perfect and aligned, and goes to `subtree` as it is, or lies on a right
    edge, and splits into a perfect left part and a shorter right part, both again of that kind.
    """
    n = end - start
    if n & (n - 1) == 0:
        return subtree(start, end)
    mid = start + _split(n)
    return node_hash(_range_hash(start, mid, subtree), _range_hash(mid, end, subtree))


def _check_size(size: int) -> None:
    if size < 0:
        raise TreeRangeError(f"tree size {size} is negative")


def root_hash_from(size: int, subtree: SubtreeHash) -> bytes:
    """Return MTH(D[0:size]), asking `subtree` only for perfect, aligned subtrees."""
    _check_size(size)
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, subtree)


def inclusion_proof_from(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """Return PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1, from the leaf up."""
    _check_size(size)
    if not 0 <= index < size:
        raise TreeRangeError(f"index {index} is outside a tree of {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            path.append(_range_hash(mid, end, subtree))
            end = mid
        else:
            path.append(_range_hash(start, mid, subtree))
            start = mid
    path.reverse()
    return path


def consistency_proof_from(old_size: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """Return PROOF(old_size, D[0:size]) of RFC 9162 section 2.1.4.1 (SUBPROOF with b = true).

    The proof from an empty tree, and between equal sizes, is empty.
    """
    _check_size(size)
    if not 0 <= old_size <= size:
        raise TreeRangeError(f"old size {old_size} is outside 0..{size}, the size of the tree")
    if old_size in (0, size):
        return []
    proof: list[bytes] = []
    start, end = 0, size
    old_root_is_a_node = True  # SUBPROOF's b: the old tree's root is the node reached so far
    while old_size != end:
        mid = start + _split(end - start)
        if old_size <= mid:
            proof.append(_range_hash(mid, end, subtree))
            end = mid
        else:
            proof.append(_range_hash(start, mid, subtree))
            start = mid
            old_root_is_a_node = False
    if not old_root_is_a_node:
        proof.append(_range_hash(start, end, subtree))
    proof.reverse()
    return proof


def _perfect_subtree(leaf_hashes: Sequence[bytes]) -> SubtreeHash:
    """Return a `subtree` callback that hashes perfect subtrees of `leaf_hashes` from the leaves."""

    def subtree(start: int, end: int) -> bytes:
        level = list(leaf_hashes[start:end])
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        return level[0]

    return subtree


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return MTH(D) for a tree with these leaf hashes (RFC 9162 section 2.1.1)."""
    return root_hash_from(len(leaf_hashes), _perfect_subtree(leaf_hashes))


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return the inclusion proof for leaf `index` in a tree with these leaf hashes."""
    return inclusion_proof_from(index, len(leaf_hashes), _perfect_subtree(leaf_hashes))


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return the consistency proof from the first `old_size` leaves to all of `leaf_hashes`."""
    return consistency_proof_from(old_size, len(leaf_hashes), _perfect_subtree(leaf_hashes))


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise VerificationError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def _check_proof_hashes(what: str, proof: Sequence[bytes]) -> None:
    for position, value in enumerate(proof):
        _check_hash(f"{what} hash {position}", value)


def _inclusion_length(index: int, size: int) -> int:
    """Return the length of PATH(index, D[0:size]): the inner part plus the right-border part."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_length(old_size: int, size: int) -> int:
    """Return the length of PROOF(old_size, D[0:size]) for 0 < old_size < size."""
    shift = (old_size & -old_size).bit_length() - 1
    seed = 0 if old_size == 1 << shift else 1
    return seed + _inclusion_length(old_size - 1, size) - shift


def verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that `proof` shows `leaf_hash` at `index` in the tree of `tree_size` with `root`.

    This is the algorithm of RFC 9162 section 2.1.3.2. Raises `VerificationError` when the proof
    does not hold; returns nothing when it does.
    """
    _check_hash("leaf hash", leaf_hash)
    _check_hash("root", root)
    _check_proof_hashes("inclusion proof", proof)
    if not 0 <= index < tree_size:
        raise VerificationError(f"index {index} is outside a tree of {tree_size}")

    def wrong_length() -> VerificationError:
        return VerificationError(
            f"inclusion proof has the wrong length for index {index} in a tree of {tree_size}: "
            f"{len(proof)} hashes, expected {_inclusion_length(index, tree_size)}"
        )

    fn, sn = index, tree_size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise wrong_length()
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise wrong_length()
    if r != root:
        raise VerificationError(
            f"root mismatch: the inclusion proof for index {index} in a tree of {tree_size} leads to a different root"
        )


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of `new_size` with `new_root` extends the tree of `old_size` with `old_root`.

    This is the algorithm of RFC 9162 section 2.1.4.2, plus the two trivial cases it leaves out:
    equal sizes need equal roots and an empty proof; an empty old tree needs the empty root and an
    empty proof. Raises `VerificationError` when the proof does not hold.
    """
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    _check_proof_hashes("consistency proof", proof)
    if old_size < 0:
        raise VerificationError(f"old tree size {old_size} is negative")
    if new_size < old_size:
        raise VerificationError(f"old tree size {old_size} is larger than new tree size {new_size}")
    if old_size == new_size:
        if proof:
            raise VerificationError(f"consistency proof between equal sizes {old_size} must be empty")
        if old_root != new_root:
            raise VerificationError(f"root mismatch: two different roots for the same tree size {old_size}")
        return
    if old_size == 0:
        if proof:
            raise VerificationError("consistency proof from an empty tree must be empty")
        if old_root != EMPTY_ROOT:
            raise VerificationError("old root mismatch: a tree of size 0 has the empty root")
        return

    def wrong_length() -> VerificationError:
        return VerificationError(
            f"consistency proof has the wrong length from size {old_size} to size {new_size}: "
            f"{len(proof)} hashes, expected {_consistency_length(old_size, new_size)}"
        )

    if not proof:
        raise wrong_length()
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise wrong_length()
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise wrong_length()
    if fr != old_root:
        raise VerificationError(
            f"old root mismatch: the consistency proof from size {old_size} to size {new_size} "
            "leads to a different old root"
        )
    if sr != new_root:
        raise VerificationError(
            f"new root mismatch: the consistency proof from size {old_size} to size {new_size} "
            "leads to a different new root"
        )
