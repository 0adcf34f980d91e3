"""Business review: business types, required evidence, teller decisions."""

from vteller.review.policy import BusinessType, ReviewPolicy

__all__ = ["BusinessType", "ReviewPolicy"]
