"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, inclusion proofs."""

from __future__ import annotations

import hashlib


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root(leaves: list[bytes]) -> bytes:
    """MTH of the leaf hashes (RFC 9162 2.1.1); empty tree: SHA-256 of nothing."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(root(leaves[:k]), root(leaves[k:]))


def inclusion_proof(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 2.1.3.1."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return inclusion_proof(index, leaves[:k]) + [root(leaves[k:])]
    return inclusion_proof(index - k, leaves[k:]) + [root(leaves[:k])]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes],
                     expected_root: bytes) -> bool:
    """RFC 9162 2.1.3.2 verification of an inclusion proof."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


# The frontier: the roots of the perfect subtrees that make up a tree of `size` leaves,
# largest first (one per set bit of `size`). Appending a leaf and computing the root
# from it are O(log n), so a log of millions of sessions is never rehashed.

def frontier_append(frontier: list[bytes], size: int, leaf: bytes) -> list[bytes]:
    """The frontier after appending `leaf` to a tree of `size` leaves."""
    out, new = list(frontier), leaf
    while size & 1:
        new = node_hash(out.pop(), new)
        size >>= 1
    out.append(new)
    return out


def frontier_root(frontier: list[bytes]) -> bytes:
    """MTH of the tree the frontier describes (RFC 9162 2.1.1)."""
    if not frontier:
        return hashlib.sha256(b"").digest()
    r = frontier[-1]
    for f in reversed(frontier[:-1]):
        r = node_hash(f, r)
    return r


def pack(frontier: list[bytes]) -> bytes:
    return b"".join(frontier)


def unpack(data: bytes) -> list[bytes]:
    return [data[i:i + 32] for i in range(0, len(data), 32)]
