"""Roles. Each role may do only what its own console needs (least privilege)."""

from enum import StrEnum


class Role(StrEnum):
    CUSTOMER = "customer"
    TELLER = "teller"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"


STAFF_ROLES = (Role.TELLER, Role.SUPERVISOR, Role.AUDITOR)
