"""Template context: the current user's roles, for navigation."""

from readerstudy.roles import is_admin, is_coordinator, is_reader


def roles(request) -> dict:
    """Callables, so that pages without navigation (the reading screen) never query the user's groups."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"is_coordinator": False, "is_admin": False, "is_reader": False}
    return {
        "is_coordinator": lambda: is_coordinator(user),
        "is_admin": lambda: is_admin(user),
        "is_reader": lambda: is_reader(user),
    }
