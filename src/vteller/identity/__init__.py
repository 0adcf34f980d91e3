"""Identity: reference enrollment, live face verification, liveness challenges."""

from vteller.identity.faces import FaceEngine, Observation, distance, to_jpeg
from vteller.identity.liveness import LivenessCheck, LivenessState, choose_challenges
from vteller.identity.policy import IdentityPolicy
from vteller.identity.reference import EnrollmentError, ReferenceStore, analyse_reference
from vteller.identity.service import IdentityService
from vteller.identity.session import IdentitySession
from vteller.identity.verify import PresenceMonitor, Verdict, VerificationWindow

__all__ = [
    "EnrollmentError",
    "FaceEngine",
    "IdentityPolicy",
    "IdentityService",
    "IdentitySession",
    "LivenessCheck",
    "LivenessState",
    "Observation",
    "PresenceMonitor",
    "ReferenceStore",
    "Verdict",
    "VerificationWindow",
    "analyse_reference",
    "choose_challenges",
    "distance",
    "to_jpeg",
]
