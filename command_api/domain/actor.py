"""Who is asking: the signed-in user and their roles."""

from __future__ import annotations

from dataclasses import dataclass

CITIZEN = "citizen"
STAFF = "staff"
ADMIN = "admin"
ROLES = (CITIZEN, STAFF, ADMIN)


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: str
    roles: frozenset[str]

    @property
    def is_staff(self) -> bool:
        """Admins can do everything staff can."""
        return STAFF in self.roles or ADMIN in self.roles

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


SYSTEM = Actor(user_id="system", roles=frozenset({ADMIN}))
