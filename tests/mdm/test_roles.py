from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, Group, User

from mdm.roles import Role, user_has_role, user_role

pytestmark = pytest.mark.django_db


def _user(name: str, *groups: str, superuser: bool = False) -> User:
    user = User.objects.create_user(name, password="pw", is_superuser=superuser)
    for group in groups:
        user.groups.add(Group.objects.get(name=group))
    return user


def test_groups_exist_after_migrate() -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= {"viewer", "steward", "admin"}


def test_roles_nest_and_superuser_is_admin() -> None:
    assert user_role(_user("v", "viewer")) is Role.VIEWER
    steward = _user("s", "viewer", "steward")
    assert user_role(steward) is Role.STEWARD
    assert user_has_role(steward, Role.VIEWER)
    assert not user_has_role(steward, Role.ADMIN)
    assert user_role(_user("root", superuser=True)) is Role.ADMIN
    assert user_role(_user("nobody")) is None
    assert user_role(AnonymousUser()) is None
