"""Every call's outcome code, derived once when the call is over (record, reports,
auditors' search).

- `missed`: the customer was never served (left or lost while waiting, or no teller).
- `successful` / `unsuccessful` / `rescheduled`: the teller's decision says so
  (approve; reject with its reason code or incomplete; reschedule). A four-eyes approval
  is `successful` with reason `pending_audit` until an auditor decides it (then the
  store sets `successful` or `unsuccessful`/`four_eyes_rejected`).
- `transferred`: no decision, handed to another queue or teller (the customer's next
  call names this one in `continued_from`).
- `dropped`: no decision, and the call ended on a lost connection (a party's socket or
  its media) or a stopped node.
- without a decision and without a drop: `successful` when the business type needs no
  evidence (an enquiry served), else `unsuccessful` with reason `no_decision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    SUCCESSFUL = "successful"
    UNSUCCESSFUL = "unsuccessful"
    DROPPED = "dropped"
    MISSED = "missed"
    RESCHEDULED = "rescheduled"
    TRANSFERRED = "transferred"  # handed to another queue or teller (a new call follows)


# end reasons of a call that was in progress and lost, not ended by a party's hangup
DROP_REASONS = frozenset({"customer_disconnected", "teller_disconnected", "server_shutdown",
                          "node_stopped"})
# the teller's decision -> outcome (reject and incomplete carry a reason)
BY_DECISION = {"approve": Outcome.SUCCESSFUL, "reject": Outcome.UNSUCCESSFUL,
               "incomplete": Outcome.UNSUCCESSFUL, "reschedule": Outcome.RESCHEDULED}


@dataclass(frozen=True)
class CallOutcome:
    outcome: Outcome
    reason: str | None


def outcome_of(*, served: bool, end_reason: str | None, decision: str | None,
               reason_code: str | None, needs_evidence: bool,
               four_eyes: bool = False) -> CallOutcome:
    """`served`: a teller accepted the call (it reached connecting or later);
    `four_eyes`: an approval waits for an auditor (reason `pending_audit` until then)."""
    if not served:
        return CallOutcome(Outcome.MISSED, end_reason)
    if decision is not None:
        outcome = BY_DECISION[decision]
        reason = reason_code if decision == "reject" else (
            "incomplete" if decision == "incomplete" else reason_code)
        if outcome == Outcome.SUCCESSFUL:
            return CallOutcome(outcome, "pending_audit" if four_eyes else None)
        return CallOutcome(outcome, reason)
    if end_reason == "transferred":
        return CallOutcome(Outcome.TRANSFERRED, None)
    if end_reason in DROP_REASONS:
        return CallOutcome(Outcome.DROPPED, end_reason)
    if needs_evidence:
        return CallOutcome(Outcome.UNSUCCESSFUL, "no_decision")
    return CallOutcome(Outcome.SUCCESSFUL, None)
