"""Remote assistance: screen-share consent (server-enforced) and navigation push."""

from vteller.assist.consent import Consent, ConsentState
from vteller.assist.policy import AssistPolicy, Destination

__all__ = ["AssistPolicy", "Consent", "ConsentState", "Destination"]
