"""Retention: crypto-shred sessions past their retention period, leaving a signed
tombstone in the global log; a legal hold blocks it.

Purging destroys the session's wrapped data key (its events and recordings can never
be decrypted again) and deletes its blobs. The encrypted event records stay: their
chain and signed checkpoints still verify without keys, and the tombstone entry in the
global log (inclusion-provable against the signed tree head) proves when and why the
session was purged. Sessions are only purged once closed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, Field

from vteller.audit import merkle
from vteller.audit.trail import AuditTrail, log_head_message
from vteller.store import BlobStore, Store

YEAR_S = 365.25 * 86400


class RetentionPolicy(BaseModel):
    """`[retention]`: years to keep sessions, per business type."""

    model_config = {"frozen": True, "extra": "forbid"}

    default_years: float = Field(5.0, gt=0, le=100)
    years_by_business_type: dict[str, float] = Field(default_factory=dict)

    def years(self, business_type: str) -> float:
        return self.years_by_business_type.get(business_type, self.default_years)


@dataclass(frozen=True)
class Purged:
    session_id: str
    business_type: str
    ended_at: float


def due(store: Store, policy: RetentionPolicy, now: float) -> list[Purged]:
    """Closed call sessions past retention, not held, not yet purged."""
    return [Purged(sid, bt, ended) for sid, bt, ended in store.retention_candidates()
            if now - ended >= policy.years(bt) * YEAR_S]


def purge(store: Store, trail: AuditTrail, blobs: BlobStore, policy: RetentionPolicy,
          now: float | None = None, dry_run: bool = False) -> list[Purged]:
    now = time.time() if now is None else now
    done = []
    for item in due(store, policy, now):
        if dry_run:
            done.append(item)
            continue
        reason = f"retention: {policy.years(item.business_type):g} years ({item.business_type})"
        # the tombstone first: if we crash after it, the next purge finishes the shred
        trail.tombstone(item.session_id, reason)
        store.shred(item.session_id, reason, time.time())
        for key in blobs.list(item.session_id):
            blobs.delete(key)
        done.append(item)
    return done


def verify_tombstone(store: Store, session_id: str,
                     public_key: Ed25519PublicKey) -> tuple[bool, str]:
    """Is there a tombstone for the session in the signed global log?"""
    with store.snapshot():
        entries = [(e,) for _idx, _sid, e in store.log_entries()]
        head = store.latest_head()
    if head is None:
        return False, "no signed tree head"
    size, root, at, sig = head
    try:
        public_key.verify(bytes(sig), log_head_message(size, bytes(root), at))
    except InvalidSignature:
        return False, "tree head signature invalid"
    leaves = [merkle.leaf_hash(bytes(e[0])) for e in entries[:size]]
    for index, (entry,) in enumerate(entries[:size]):
        try:
            data = json.loads(bytes(entry))
        except ValueError:
            continue
        if data.get("tombstone") == session_id:
            proof = merkle.inclusion_proof(index, leaves)
            if merkle.verify_inclusion(index, size, leaves[index], proof, bytes(root)):
                return True, (f"purged {time.strftime('%Y-%m-%d', time.gmtime(data['purged_at']))}"
                              f" ({data['reason']}); tombstone is entry {index} of {size}")
            return False, "tombstone not included in the signed tree head"
    return False, "no tombstone for this session"
