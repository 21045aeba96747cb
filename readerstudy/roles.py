"""Roles: reader, coordinator, admin, as Django groups (admin also means staff/superuser).

Readers read the studies they are assigned to. Coordinators build studies, assign readers and see results.
Admins manage everything, including generation batches, through these pages and the Django admin.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.core.exceptions import PermissionDenied

READER = "reader"
COORDINATOR = "coordinator"
ADMIN = "admin"
ROLE_GROUPS = (READER, COORDINATOR, ADMIN)

User = AbstractBaseUser | AnonymousUser


def _in_group(user: User, name: str) -> bool:
    if not user.is_authenticated:
        return False
    cache = getattr(user, "_role_groups", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        user._role_groups = cache
    return name in cache


def is_admin(user: User) -> bool:
    return user.is_authenticated and (user.is_superuser or _in_group(user, ADMIN))


def is_coordinator(user: User) -> bool:
    return is_admin(user) or _in_group(user, COORDINATOR)


def is_reader(user: User) -> bool:
    return _in_group(user, READER)


def ensure_role_groups() -> dict[str, Group]:
    return {name: Group.objects.get_or_create(name=name)[0] for name in ROLE_GROUPS}


def coordinator_required(view):
    """Logged-in coordinators and admins only; anyone else logged in gets 403."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_coordinator(request.user):
            raise PermissionDenied("Only study coordinators can open this page.")
        return view(request, *args, **kwargs)

    return wrapper


class RoleBackend(ModelBackend):
    """Django's model backend, and every permission for active members of the admin group: admins manage
    everything in the Django admin, whatever permissions their group was given. Logging in to the Django admin
    still takes ``is_staff``."""

    def has_perm(self, user_obj, perm, obj=None) -> bool:
        if user_obj.is_active and _in_group(user_obj, ADMIN):
            return True
        return super().has_perm(user_obj, perm, obj)

    def has_module_perms(self, user_obj, app_label) -> bool:
        if user_obj.is_active and _in_group(user_obj, ADMIN):
            return True
        return super().has_module_perms(user_obj, app_label)
