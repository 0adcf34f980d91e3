"""The accessible alternative to gesture liveness: a spoken check the teller attests.

Gesture challenges must not be the only way (India's V-CIP rules: liveness may not
exclude persons with disabilities; China's 2025 face-recognition rules: not the only
way where alternatives exist). The teller starts a spoken check with a recorded
reason; the server picks a random phrase of digits for the customer to read aloud
(shown on the customer's screen and the teller's, and readable to the customer by the
teller) and random questions for the teller to ask. A replayed clip cannot say a
phrase chosen after it was made. The teller attests what they saw and heard; the
recording holds the answer for the auditor. Each business type's review policy says
whether this attestation may stand in for `liveness_passed`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from vteller.identity.policy import IdentityPolicy


class SpokenState(StrEnum):
    RUNNING = "running"
    PASSED = "passed"  # the teller attests the customer answered live
    FAILED = "failed"  # the teller attests they did not
    EXPIRED = "expired"  # no attestation in time


TRANSITIONS: dict[SpokenState, frozenset[SpokenState]] = {
    SpokenState.RUNNING: frozenset({SpokenState.PASSED, SpokenState.FAILED,
                                    SpokenState.EXPIRED}),
    SpokenState.PASSED: frozenset(),
    SpokenState.FAILED: frozenset(),
    SpokenState.EXPIRED: frozenset(),
}


def random_phrase(digits: int, rng: Any = None) -> str:
    """Digits grouped in threes ("581 204"): easy to read aloud in any language."""
    rng = rng or secrets.SystemRandom()
    raw = "".join(str(rng.randrange(10)) for _ in range(digits))
    return " ".join(raw[i:i + 3] for i in range(0, len(raw), 3))


@dataclass
class SpokenCheck:
    reason: str
    notes: str
    phrase: str
    questions: list[str]
    started_at: float
    state: SpokenState = SpokenState.RUNNING
    ended_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, policy: IdentityPolicy, reason: str, notes: str, at: float,
              rng: Any = None) -> SpokenCheck:
        rng = rng or secrets.SystemRandom()
        questions = rng.sample(list(policy.spoken_questions),
                               min(policy.spoken_questions_asked, len(policy.spoken_questions)))
        return cls(reason, notes, random_phrase(policy.spoken_digits, rng), questions, at)

    @property
    def done(self) -> bool:
        return self.state != SpokenState.RUNNING

    def move(self, to: SpokenState, at: float) -> None:
        if to not in TRANSITIONS[self.state]:
            raise ValueError(f"spoken check {self.state} -> {to} not allowed")
        self.state, self.ended_at = to, at

    def public(self) -> dict[str, Any]:
        return {"state": self.state.value, "reason": self.reason, "phrase": self.phrase,
                "questions": self.questions}
