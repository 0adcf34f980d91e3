"""Authentication: customer tokens from the bank backend, staff login, roles."""

from vteller.auth.errors import AuthError
from vteller.auth.roles import Role
from vteller.auth.service import ServiceAuth
from vteller.auth.staff import (
    LocalLoginLimiter,
    LoginLimiter,
    LoginRateLimiter,
    SharedLoginLimiter,
    StaffAuth,
)
from vteller.auth.tokens import CustomerClaims, CustomerTokenVerifier, DevTokenIssuer

__all__ = [
    "AuthError",
    "CustomerClaims",
    "CustomerTokenVerifier",
    "DevTokenIssuer",
    "LocalLoginLimiter",
    "LoginLimiter",
    "LoginRateLimiter",
    "SharedLoginLimiter",
    "Role",
    "ServiceAuth",
    "StaffAuth",
]
