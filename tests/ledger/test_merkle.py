"""Tests for `ledger.merkle`: published RFC 6962 vectors, an independent reference, and tampering."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, VerificationError
from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    TreeRangeError,
    consistency_proof,
    consistency_proof_from,
    inclusion_proof,
    inclusion_proof_from,
    leaf_hash,
    node_hash,
    root_hash,
    root_hash_from,
    verify_consistency,
    verify_inclusion,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "assets" / "merkle" / "rfc6962_vectors.json").read_text()
)
CT_LEAVES = [leaf_hash(bytes.fromhex(data)) for data in VECTORS["leaf_inputs_hex"]]
CT_ROOTS = [bytes.fromhex(root) for root in VECTORS["root_hashes"]]

# From transparency-dev/merkle proof/verify_test.go: a hash that is in no tree here.
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


class Reference:
    """RFC 9162 section 2.1, transcribed as literally as possible, with a cache of MTH per range."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = list(leaves)
        self._mth: dict[tuple[int, int], bytes] = {}

    @staticmethod
    def split(n: int) -> int:
        k = 1
        while k * 2 < n:
            k *= 2
        return k

    def mth(self, start: int, end: int) -> bytes:
        if (start, end) not in self._mth:
            n = end - start
            if n == 0:
                value = hashlib.sha256(b"").digest()
            elif n == 1:
                value = self.leaves[start]
            else:
                k = self.split(n)
                value = node_hash(self.mth(start, start + k), self.mth(start + k, end))
            self._mth[start, end] = value
        return self._mth[start, end]

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        if end - start == 1:
            return []
        k = self.split(end - start)
        if m < start + k:
            return [*self.path(m, start, start + k), self.mth(start + k, end)]
        return [*self.path(m, start + k, end), self.mth(start, start + k)]

    def subproof(self, m: int, start: int, end: int, b: bool) -> list[bytes]:
        if m == end:
            return [] if b else [self.mth(start, end)]
        k = self.split(end - start)
        if m <= start + k:
            return [*self.subproof(m, start, start + k, b), self.mth(start + k, end)]
        return [*self.subproof(m, start + k, end, False), self.mth(start, start + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        return [] if m in (0, n) else self.subproof(m, 0, n, True)


class PerfectOnly:
    """A `subtree` callback that fails the test unless asked for a perfect, aligned subtree."""

    def __init__(self, hash_of: Callable[[int, int], bytes]) -> None:
        self.hash_of = hash_of
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> bytes:
        size = end - start
        assert size > 0 and size & (size - 1) == 0 and start % size == 0, (start, end)
        self.calls.append((start, end))
        return self.hash_of(start, end)


LEAVES = [leaf_hash(b"leaf %d" % i) for i in range(256)]
REFERENCE = Reference(LEAVES)
CT_REFERENCE = Reference(CT_LEAVES)


# --- published vectors -----------------------------------------------------------------------


def test_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == CT_ROOTS[0]
    assert root_hash([]) == EMPTY_ROOT
    assert root_hash_from(0, PerfectOnly(CT_REFERENCE.mth)) == EMPTY_ROOT


def test_leaf_and_node_hash_domain_separation() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


@pytest.mark.parametrize("size", range(len(CT_ROOTS)))
def test_root_hash_vectors(size: int) -> None:
    assert root_hash(CT_LEAVES[:size]) == CT_ROOTS[size]
    assert root_hash_from(size, PerfectOnly(CT_REFERENCE.mth)) == CT_ROOTS[size]


def test_node_hash_vectors() -> None:
    for level, hashes in enumerate(VECTORS["node_hashes"]):
        width = 1 << level
        for position, expected in enumerate(hashes):
            start = position * width
            assert root_hash(CT_LEAVES[start : start + width]).hex() == expected


@pytest.mark.parametrize("vector", VECTORS["inclusion_proofs"], ids=lambda v: f"{v['index']}:{v['size']}")
def test_inclusion_proof_vectors(vector: dict[str, Any]) -> None:
    index, size = vector["index"], vector["size"]
    expected = [bytes.fromhex(value) for value in vector["proof"]]
    assert inclusion_proof(index, CT_LEAVES[:size]) == expected
    assert inclusion_proof_from(index, size, PerfectOnly(CT_REFERENCE.mth)) == expected
    verify_inclusion(CT_LEAVES[index], index, size, expected, CT_ROOTS[size])


@pytest.mark.parametrize("vector", VECTORS["consistency_proofs"], ids=lambda v: f"{v['old_size']}:{v['new_size']}")
def test_consistency_proof_vectors(vector: dict[str, Any]) -> None:
    old, new = vector["old_size"], vector["new_size"]
    expected = [bytes.fromhex(value) for value in vector["proof"]]
    assert consistency_proof(old, CT_LEAVES[:new]) == expected
    assert consistency_proof_from(old, new, PerfectOnly(CT_REFERENCE.mth)) == expected
    verify_consistency(old, new, CT_ROOTS[old], CT_ROOTS[new], expected)


def _shape_ranges(nodes: list[list[int]], rehash: list[int] | None) -> list[tuple[int, int]]:
    """Turn transparency-dev node ids into leaf ranges, merging the rehashed run into one node."""
    ranges = [(index << level, (index + 1) << level) for level, index in nodes]
    if rehash is None:
        return ranges
    begin, end = rehash
    merged = ranges[begin:end]
    return [*ranges[:begin], (min(r[0] for r in merged), max(r[1] for r in merged)), *ranges[end:]]


@pytest.mark.parametrize("shape", VECTORS["inclusion_shapes"], ids=lambda v: f"{v['index']}:{v['size']}")
def test_inclusion_proof_shapes(shape: dict[str, Any]) -> None:
    size, index = shape["size"], shape["index"]
    expected = [REFERENCE.mth(start, end) for start, end in _shape_ranges(shape["nodes"], shape["rehash"])]
    assert inclusion_proof(index, LEAVES[:size]) == expected


@pytest.mark.parametrize("shape", VECTORS["consistency_shapes"], ids=lambda v: f"{v['old_size']}:{v['new_size']}")
def test_consistency_proof_shapes(shape: dict[str, Any]) -> None:
    old, new = shape["old_size"], shape["new_size"]
    expected = [REFERENCE.mth(start, end) for start, end in _shape_ranges(shape["nodes"], shape["rehash"])]
    assert consistency_proof(old, LEAVES[:new]) == expected


# --- corruption probes ported from transparency-dev/merkle proof/verify_test.go --------------


def _flip(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


def _inclusion_probes(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, bytes, int, int, list[bytes], bytes]]:
    probes = [
        ("index - 1", leaf, index - 1, size, proof, root),
        ("index + 1", leaf, index + 1, size, proof, root),
        ("index ^ 2", leaf, index ^ 2, size, proof, root),
        ("size * 2", leaf, index, size * 2, proof, root),
        ("size // 2", leaf, index, size // 2, proof, root),
        ("wrong leaf", b"WrongLeaf", index, size, proof, root),
        ("empty root", leaf, index, size, proof, EMPTY_ROOT),
        ("random root", leaf, index, size, proof, SOME_HASH),
        ("trailing garbage", leaf, index, size, [*proof, b""], root),
        ("trailing root", leaf, index, size, [*proof, root], root),
        ("preceding garbage", leaf, index, size, [b"", *proof], root),
        ("preceding root", leaf, index, size, [root, *proof], root),
    ]
    for i in range(len(proof)):
        changed = list(proof)
        changed[i] = bytes([changed[i][0] ^ 8]) + changed[i][1:]
        probes.append((f"modified proof[{i}] bit 3", leaf, index, size, changed, root))
    if proof:
        probes.append(("removed component", leaf, index, size, proof[:-1], root))
    if len(proof) > 1:
        probes.append(("inserted component", leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root))
    return probes


@pytest.mark.parametrize("vector", VECTORS["inclusion_proofs"], ids=lambda v: f"{v['index']}:{v['size']}")
def test_inclusion_corruption_probes(vector: dict[str, Any]) -> None:
    index, size = vector["index"], vector["size"]
    proof = [bytes.fromhex(value) for value in vector["proof"]]
    for desc, leaf, i, n, changed, root in _inclusion_probes(index, size, proof, CT_ROOTS[size], CT_LEAVES[index]):
        with pytest.raises(VerificationError):
            verify_inclusion(leaf, i, n, changed, root)
            pytest.fail(f"verified against: {desc}")


def _consistency_probes(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    probes = [
        ("old - 1", old - 1, new, old_root, new_root, proof),
        ("old + 1", old + 1, new, old_root, new_root, proof),
        ("old ^ 2", old ^ 2, new, old_root, new_root, proof),
        ("new * 2", old, new * 2, old_root, new_root, proof),
        ("new // 2", old, new // 2, old_root, new_root, proof),
        ("wrong old root", old, new, b"WrongRoot", new_root, proof),
        ("wrong new root", old, new, old_root, b"WrongRoot", proof),
        ("swapped roots", old, new, new_root, old_root, proof),
        ("empty proof", old, new, old_root, new_root, []),
        ("trailing garbage", old, new, old_root, new_root, [*proof, b""]),
        ("trailing old root", old, new, old_root, new_root, [*proof, old_root]),
        ("trailing new root", old, new, old_root, new_root, [*proof, new_root]),
        ("preceding garbage", old, new, old_root, new_root, [b"", *proof]),
        ("preceding old root", old, new, old_root, new_root, [old_root, *proof]),
        ("preceding new root", old, new, old_root, new_root, [new_root, *proof]),
        ("preceding proof[0]", old, new, old_root, new_root, [proof[0], *proof]),
        ("truncated proof", old, new, old_root, new_root, proof[:-1]),
    ]
    for i in range(len(proof)):
        changed = list(proof)
        changed[i] = bytes([changed[i][0] ^ 16]) + changed[i][1:]
        probes.append((f"modified proof[{i}] bit 4", old, new, old_root, new_root, changed))
    return probes


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS["consistency_proofs"] if v["proof"]],
    ids=lambda v: f"{v['old_size']}:{v['new_size']}",
)
def test_consistency_corruption_probes(vector: dict[str, Any]) -> None:
    old, new = vector["old_size"], vector["new_size"]
    proof = [bytes.fromhex(value) for value in vector["proof"]]
    for desc, m, n, old_root, new_root, changed in _consistency_probes(old, new, CT_ROOTS[old], CT_ROOTS[new], proof):
        with pytest.raises(VerificationError):
            verify_consistency(m, n, old_root, new_root, changed)
            pytest.fail(f"verified against: {desc}")


def test_single_entry_tree() -> None:
    # transparency-dev/merkle TestVerifyInclusionSingleEntry: root and leaf hash coincide.
    leaf = leaf_hash(b"data")
    verify_inclusion(leaf, 0, 1, [], leaf)
    for bad_leaf, bad_root in [(leaf, b""), (b"", leaf), (b"", b"")]:
        with pytest.raises(VerificationError, match="is 0 bytes, not 32"):
            verify_inclusion(bad_leaf, 0, 1, [], bad_root)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1)])
def test_inclusion_rejects_bad_leaf_root_pairs(index: int, size: int) -> None:
    # transparency-dev/merkle TestVerifyInclusion, with 32-byte hashes so the index is what fails.
    for leaf, root in [(SOME_HASH, EMPTY_ROOT), (EMPTY_ROOT, SOME_HASH)]:
        with pytest.raises(VerificationError):
            verify_inclusion(leaf, index, size, [], root)


# --- messages ---------------------------------------------------------------------------------


def _tree(size: int) -> tuple[list[bytes], bytes]:
    return LEAVES[:size], REFERENCE.mth(0, size)


def test_inclusion_messages() -> None:
    leaves, root = _tree(8)
    proof = inclusion_proof(3, leaves)
    with pytest.raises(VerificationError, match=r"^index 9 is outside a tree of 8$"):
        verify_inclusion(leaves[3], 9, 8, proof, root)
    with pytest.raises(VerificationError, match=r"^index -1 is outside a tree of 8$"):
        verify_inclusion(leaves[3], -1, 8, proof, root)
    with pytest.raises(
        VerificationError,
        match=r"^inclusion proof has the wrong length for index 3 in a tree of 8: 2 hashes, expected 3$",
    ):
        verify_inclusion(leaves[3], 3, 8, proof[:2], root)
    with pytest.raises(VerificationError, match=r"wrong length for index 3 in a tree of 8: 4 hashes, expected 3"):
        verify_inclusion(leaves[3], 3, 8, [*proof, SOME_HASH], root)
    with pytest.raises(VerificationError, match=r"^root mismatch: the inclusion proof for index 3"):
        verify_inclusion(leaves[4], 3, 8, proof, root)
    with pytest.raises(VerificationError, match=r"^inclusion proof hash 1 is 31 bytes, not 32$"):
        verify_inclusion(leaves[3], 3, 8, [proof[0], proof[1][:31], proof[2]], root)
    with pytest.raises(VerificationError, match=r"^root is 33 bytes, not 32$"):
        verify_inclusion(leaves[3], 3, 8, proof, root + b"\x00")
    with pytest.raises(VerificationError, match=r"^leaf hash is 4 bytes, not 32$"):
        verify_inclusion(b"leaf", 3, 8, proof, root)


def test_consistency_messages() -> None:
    leaves, root8 = _tree(8)
    root6 = REFERENCE.mth(0, 6)
    proof = consistency_proof(6, leaves)
    with pytest.raises(VerificationError, match=r"^old tree size 9 is larger than new tree size 8$"):
        verify_consistency(9, 8, root6, root8, proof)
    with pytest.raises(VerificationError, match=r"^old tree size -1 is negative$"):
        verify_consistency(-1, 8, root6, root8, proof)
    with pytest.raises(
        VerificationError,
        match=r"^consistency proof has the wrong length from size 6 to size 8: 2 hashes, expected 3$",
    ):
        verify_consistency(6, 8, root6, root8, proof[:2])
    with pytest.raises(VerificationError, match=r"wrong length from size 6 to size 8: 0 hashes, expected 3"):
        verify_consistency(6, 8, root6, root8, [])
    with pytest.raises(VerificationError, match=r"wrong length from size 6 to size 8: 4 hashes, expected 3"):
        verify_consistency(6, 8, root6, root8, [*proof, SOME_HASH])
    with pytest.raises(VerificationError, match=r"^old root mismatch: the consistency proof from size 6"):
        verify_consistency(6, 8, SOME_HASH, root8, proof)
    with pytest.raises(VerificationError, match=r"^new root mismatch: the consistency proof from size 6"):
        verify_consistency(6, 8, root6, SOME_HASH, proof)
    with pytest.raises(VerificationError, match=r"^consistency proof hash 0 is 0 bytes, not 32$"):
        verify_consistency(6, 8, root6, root8, [b"", *proof[1:]])
    with pytest.raises(VerificationError, match=r"^old root is 9 bytes, not 32$"):
        verify_consistency(6, 8, b"WrongRoot", root8, proof)
    with pytest.raises(VerificationError, match=r"^new root is 9 bytes, not 32$"):
        verify_consistency(6, 8, root6, b"WrongRoot", proof)


def test_consistency_trivial_cases() -> None:
    # Adapted from transparency-dev/merkle TestVerifyConsistency. Two deliberate differences: every
    # root must be 32 bytes, and an empty old tree must have the empty root (any other root is not
    # the root of a tree of size 0, so accepting it would vouch for a false tree head).
    _, root1 = _tree(1)
    _, root2 = _tree(2)
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 1, EMPTY_ROOT, root1, [])
    verify_consistency(0, 2, EMPTY_ROOT, root2, [])
    verify_consistency(1, 1, root1, root1, [])
    verify_consistency(2, 2, root2, root2, [])
    with pytest.raises(VerificationError, match=r"^root mismatch: two different roots for the same tree size 1$"):
        verify_consistency(1, 1, root1, root2, [])
    with pytest.raises(VerificationError, match=r"^root mismatch: two different roots for the same tree size 0$"):
        verify_consistency(0, 0, EMPTY_ROOT, root2, [])
    with pytest.raises(VerificationError, match=r"^old root mismatch: a tree of size 0 has the empty root$"):
        verify_consistency(0, 1, root1, root1, [])
    with pytest.raises(VerificationError, match=r"^consistency proof between equal sizes 1 must be empty$"):
        verify_consistency(1, 1, root1, root1, [EMPTY_ROOT])
    with pytest.raises(VerificationError, match=r"^consistency proof from an empty tree must be empty$"):
        verify_consistency(0, 1, EMPTY_ROOT, root1, [EMPTY_ROOT])
    with pytest.raises(VerificationError, match=r"^old tree size 1 is larger than new tree size 0$"):
        verify_consistency(1, 0, root1, EMPTY_ROOT, [])
    with pytest.raises(VerificationError, match=r"^old tree size 2 is larger than new tree size 1$"):
        verify_consistency(2, 1, root2, root1, [])
    with pytest.raises(VerificationError, match=r"wrong length from size 1 to size 2: 0 hashes, expected 1"):
        verify_consistency(1, 2, root1, root2, [])


def test_proof_requests_outside_the_tree() -> None:
    leaves, _ = _tree(8)
    with pytest.raises(TreeRangeError, match=r"^index 8 is outside a tree of 8$"):
        inclusion_proof(8, leaves)
    with pytest.raises(TreeRangeError, match=r"^index -1 is outside a tree of 8$"):
        inclusion_proof(-1, leaves)
    with pytest.raises(TreeRangeError, match=r"^index 0 is outside a tree of 0$"):
        inclusion_proof(0, [])
    with pytest.raises(TreeRangeError, match=r"^old size 9 is outside 0\.\.8, the size of the tree$"):
        consistency_proof(9, leaves)
    with pytest.raises(TreeRangeError, match=r"^old size -1 is outside 0\.\.8"):
        consistency_proof(-1, leaves)
    with pytest.raises(TreeRangeError, match=r"^tree size -1 is negative$"):
        root_hash_from(-1, PerfectOnly(REFERENCE.mth))
    # One error root: a caller can catch LedgerError, or ValueError as for any bad argument.
    assert issubclass(TreeRangeError, LedgerError) and issubclass(TreeRangeError, ValueError)
    assert consistency_proof(0, leaves) == [] and consistency_proof(8, leaves) == []


# --- exhaustive round trip against the reference ---------------------------------------------


def test_round_trip_every_index_and_old_size_up_to_64() -> None:
    for size in range(1, 65):
        leaves = LEAVES[:size]
        root = REFERENCE.mth(0, size)
        callback = PerfectOnly(REFERENCE.mth)
        assert root_hash(leaves) == root == root_hash_from(size, callback)
        for index in range(size):
            proof = inclusion_proof(index, leaves)
            assert proof == REFERENCE.path(index, 0, size)
            assert proof == inclusion_proof_from(index, size, callback)
            verify_inclusion(leaves[index], index, size, proof, root)
        for old in range(size + 1):
            proof = consistency_proof(old, leaves)
            assert proof == REFERENCE.proof(old, size)
            assert proof == consistency_proof_from(old, size, callback)
            verify_consistency(old, size, REFERENCE.mth(0, old), root, proof)


def test_wrong_length_messages_name_the_right_length_up_to_64() -> None:
    for size in range(1, 65):
        leaves = LEAVES[:size]
        root = REFERENCE.mth(0, size)
        for index in range(size):
            proof = inclusion_proof(index, leaves)
            with pytest.raises(VerificationError, match=rf"{len(proof) + 1} hashes, expected {len(proof)}$"):
                verify_inclusion(leaves[index], index, size, [*proof, root], root)
        for old in range(1, size):
            proof = consistency_proof(old, leaves)
            with pytest.raises(VerificationError, match=rf"{len(proof) - 1} hashes, expected {len(proof)}$"):
                verify_consistency(old, size, REFERENCE.mth(0, old), root, proof[:-1])


class SparseTree:
    """A real tree of any size whose leaves are all alike except a few marked ones.

    Every subtree hash costs O(marks * log n), so the callback forms can be checked on a million
    leaves, with distinct leaves where the proofs are taken.
    """

    def __init__(self, marks: Sequence[int]) -> None:
        self.marks = sorted(set(marks))
        self._plain: dict[int, bytes] = {1: leaf_hash(b"plain")}

    def leaf(self, index: int) -> bytes:
        return leaf_hash(b"marked %d" % index) if index in self.marks else self._plain[1]

    def plain(self, size: int) -> bytes:
        if size not in self._plain:
            half = self.plain(size // 2)
            self._plain[size] = node_hash(half, half)
        return self._plain[size]

    def mth(self, start: int, end: int) -> bytes:
        """MTH of a perfect range."""
        if not any(start <= mark < end for mark in self.marks):
            return self.plain(end - start)
        if end - start == 1:
            return self.leaf(start)
        mid = (start + end) // 2
        return node_hash(self.mth(start, mid), self.mth(mid, end))


def test_sparse_tree_agrees_with_the_list_form() -> None:
    tree = SparseTree([0, 5, 6, 12])
    leaves = [tree.leaf(i) for i in range(13)]
    for size in range(14):
        assert root_hash_from(size, PerfectOnly(tree.mth)) == root_hash(leaves[:size])


@pytest.mark.parametrize("size", [1_000_000, 2**20, 2**20 - 1, 999_983])
def test_callback_forms_read_o_log_n_perfect_subtrees(size: int) -> None:
    indexes = [0, 1, size // 3, size - 2, size - 1]
    tree = SparseTree(indexes)
    subtree = PerfectOnly(tree.mth)
    bound = 2 * size.bit_length()
    root = root_hash_from(size, subtree)
    assert len(subtree.calls) <= bound
    for index in indexes:
        subtree.calls.clear()
        proof = inclusion_proof_from(index, size, subtree)
        assert len(subtree.calls) <= bound
        verify_inclusion(tree.leaf(index), index, size, proof, root)
        with pytest.raises(VerificationError):
            verify_inclusion(tree.leaf(index), index ^ 1, size, proof, root)
    for old in (1, 2, size // 2, size - 7, size - 1):
        subtree.calls.clear()
        proof = consistency_proof_from(old, size, subtree)
        assert len(subtree.calls) <= bound
        old_root = root_hash_from(old, subtree)
        verify_consistency(old, size, old_root, root, proof)
        with pytest.raises(VerificationError):
            verify_consistency(old, size, old_root, tree.leaf(0), proof)


# --- hypothesis: tampering is always caught ---------------------------------------------------

sizes = st.integers(min_value=1, max_value=128)


@st.composite
def inclusion_cases(draw: st.DrawFn) -> tuple[int, int, list[bytes], bytes]:
    size = draw(sizes)
    index = draw(st.integers(min_value=0, max_value=size - 1))
    return index, size, inclusion_proof(index, LEAVES[:size]), REFERENCE.mth(0, size)


@st.composite
def consistency_cases(draw: st.DrawFn) -> tuple[int, int, list[bytes], bytes, bytes]:
    size = draw(st.integers(min_value=2, max_value=128))
    old = draw(st.integers(min_value=1, max_value=size - 1))
    return old, size, consistency_proof(old, LEAVES[:size]), REFERENCE.mth(0, old), REFERENCE.mth(0, size)


bits = st.integers(min_value=0, max_value=8 * HASH_SIZE - 1)
fast = settings(max_examples=60, deadline=None)


@fast
@given(case=inclusion_cases(), bit=bits, data=st.data())
def test_inclusion_bit_flip_is_caught(case: tuple[int, int, list[bytes], bytes], bit: int, data: st.DataObject) -> None:
    index, size, proof, root = case
    leaf = LEAVES[index]
    target = data.draw(st.sampled_from(["leaf", "root"] + [f"proof {i}" for i in range(len(proof))]))
    if target == "leaf":
        leaf = _flip(leaf, bit)
    elif target == "root":
        root = _flip(root, bit)
    else:
        position = int(target.split()[1])
        proof = [*proof[:position], _flip(proof[position], bit), *proof[position + 1 :]]
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, index, size, proof, root)


@fast
@given(case=inclusion_cases(), extra=st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE), data=st.data())
def test_inclusion_truncated_or_extended_proof_is_caught(
    case: tuple[int, int, list[bytes], bytes], extra: bytes, data: st.DataObject
) -> None:
    index, size, proof, root = case
    changes = [[*proof, extra], [extra, *proof]]
    if proof:
        changes += [proof[:-1], proof[1:]]
    changed = data.draw(st.sampled_from(changes))
    with pytest.raises(VerificationError, match="wrong length"):
        verify_inclusion(LEAVES[index], index, size, changed, root)


@fast
@given(case=inclusion_cases(), data=st.data())
def test_inclusion_wrong_index_is_caught(case: tuple[int, int, list[bytes], bytes], data: st.DataObject) -> None:
    index, size, proof, root = case
    other = data.draw(st.integers(min_value=-2, max_value=size + 2).filter(lambda i: i != index))
    with pytest.raises(VerificationError):
        verify_inclusion(LEAVES[index], other, size, proof, root)
    if 0 <= other < size:
        with pytest.raises(VerificationError):
            verify_inclusion(LEAVES[other], other, size, proof, root)


@fast
@given(case=inclusion_cases(), other=sizes)
def test_inclusion_wrong_size_is_caught(case: tuple[int, int, list[bytes], bytes], other: int) -> None:
    # Against the other size's own root. (Against the original root a proof can verify for another
    # size with the same path: index 0 in trees of 7 and 8. The root then names the tree.)
    index, size, proof, _ = case
    if other == size:
        return
    with pytest.raises(VerificationError):
        verify_inclusion(LEAVES[index], index, other, proof, REFERENCE.mth(0, other))


@fast
@given(case=consistency_cases(), bit=bits, data=st.data())
def test_consistency_bit_flip_is_caught(
    case: tuple[int, int, list[bytes], bytes, bytes], bit: int, data: st.DataObject
) -> None:
    old, size, proof, old_root, new_root = case
    target = data.draw(st.sampled_from(["old root", "new root"] + [f"proof {i}" for i in range(len(proof))]))
    if target == "old root":
        old_root = _flip(old_root, bit)
    elif target == "new root":
        new_root = _flip(new_root, bit)
    else:
        position = int(target.split()[1])
        proof = [*proof[:position], _flip(proof[position], bit), *proof[position + 1 :]]
    with pytest.raises(VerificationError):
        verify_consistency(old, size, old_root, new_root, proof)


@fast
@given(case=consistency_cases(), extra=st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE), data=st.data())
def test_consistency_truncated_or_extended_proof_is_caught(
    case: tuple[int, int, list[bytes], bytes, bytes], extra: bytes, data: st.DataObject
) -> None:
    old, size, proof, old_root, new_root = case
    changed = data.draw(st.sampled_from([[*proof, extra], [extra, *proof], proof[:-1], proof[1:]]))
    with pytest.raises(VerificationError, match="wrong length"):
        verify_consistency(old, size, old_root, new_root, changed)


@fast
@given(
    case=consistency_cases(),
    other=st.integers(min_value=1, max_value=160),
    which=st.sampled_from(["old", "new"]),
)
def test_consistency_wrong_size_is_caught(
    case: tuple[int, int, list[bytes], bytes, bytes], other: int, which: str
) -> None:
    old, size, proof, old_root, new_root = case
    if which == "old":
        if other in (old, size) or other > size:
            return
        with pytest.raises(VerificationError):
            verify_consistency(other, size, REFERENCE.mth(0, other), new_root, proof)
    else:
        if other <= old or other == size:
            return
        with pytest.raises(VerificationError):
            verify_consistency(old, other, old_root, REFERENCE.mth(0, other), proof)
