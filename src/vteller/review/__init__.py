"""Business review: business types, required evidence, teller decisions."""

from vteller.review.policy import BusinessType, ReviewPolicy, missing_evidence

__all__ = ["BusinessType", "ReviewPolicy", "missing_evidence"]
