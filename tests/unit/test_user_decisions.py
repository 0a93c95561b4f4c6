"""Decisions of the User aggregate and the catalogue."""

from __future__ import annotations

import pytest

from command_api import commands as c
from command_api.domain import catalogue as cat
from command_api.domain import user as u
from command_api.domain.actor import ADMIN, CITIZEN, STAFF, Actor
from command_api.domain.errors import Forbidden, Invalid, NotFound
from events import types as e

ADA = u.User(id="ada", version=1, email="ada@example.org", display_name="Ada", roles=frozenset({CITIZEN}))
ADMINISTRATOR = Actor("root", frozenset({CITIZEN, ADMIN}))
STAFFER = Actor("staff", frozenset({CITIZEN, STAFF}))


class TestRegistration:
    def test_emails_are_normalised_and_everyone_is_a_citizen(self) -> None:
        [event] = u.register(c.RegisterUser("  Ada@Example.ORG ", "pw", " Ada ", ("staff",)), "hash")
        assert event == e.UserRegistered(
            email="ada@example.org", display_name="Ada", password_hash="hash", roles=("citizen", "staff")
        )

    def test_unknown_roles_are_refused(self) -> None:
        with pytest.raises(Invalid):
            u.register(c.RegisterUser("a@b.co", "pw", "A", ("mayor",)), "hash")


class TestProfile:
    def test_users_change_their_own_name_only(self) -> None:
        assert u.change_profile(ADA, c.ChangeProfile("ada", "Ada L."), ADA.as_actor()) == [
            e.UserProfileChanged(display_name="Ada L.")
        ]
        with pytest.raises(Forbidden):
            u.change_profile(ADA, c.ChangeProfile("ada", "Hacked"), STAFFER)
        assert u.change_profile(ADA, c.ChangeProfile("ada", "Ada"), ADA.as_actor()) == []

    def test_a_missing_user_is_not_found(self) -> None:
        with pytest.raises(NotFound):
            u.change_profile(u.User(id="ghost"), c.ChangeProfile("ghost", "x"), ADMINISTRATOR)


class TestRoles:
    def test_only_admins_grant_and_revoke(self) -> None:
        with pytest.raises(Forbidden):
            u.grant_role(ADA, c.GrantRole("ada", STAFF), STAFFER)
        assert u.grant_role(ADA, c.GrantRole("ada", STAFF), ADMINISTRATOR) == [e.UserRoleGranted(role=STAFF)]
        staff_ada = u.evolve(ADA, e.UserRoleGranted(role=STAFF), None)  # type: ignore[arg-type]
        assert u.grant_role(staff_ada, c.GrantRole("ada", STAFF), ADMINISTRATOR) == []
        assert u.revoke_role(staff_ada, c.RevokeRole("ada", STAFF), ADMINISTRATOR) == [e.UserRoleRevoked(role=STAFF)]

    def test_the_citizen_role_stays_and_admins_keep_their_own_admin_role(self) -> None:
        with pytest.raises(Invalid):
            u.revoke_role(ADA, c.RevokeRole("ada", CITIZEN), ADMINISTRATOR)
        root = u.User(id="root", version=1, roles=frozenset({CITIZEN, ADMIN}))
        with pytest.raises(Invalid):
            u.revoke_role(root, c.RevokeRole("root", ADMIN), ADMINISTRATOR)


class TestCatalogue:
    def test_the_seed_defines_categories_with_departments(self) -> None:
        """Seeding from the data file gives a catalogue that knows each category's department."""
        state = cat.Catalogue()
        for cmd in cat.seed_commands():
            for event in cat.define(state, cmd, ADMINISTRATOR):
                state = cat.evolve(state, event, None)  # type: ignore[arg-type]
        assert state.department_of("pothole") == "roads"
        with pytest.raises(Invalid, match="unknown category"):
            state.department_of("dragons")

    def test_only_admins_change_the_catalogue(self) -> None:
        with pytest.raises(Forbidden):
            cat.define(cat.Catalogue(), c.DefineCategory("x", "X", "x", "roads"), STAFFER)
