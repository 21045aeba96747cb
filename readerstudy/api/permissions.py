from rest_framework.permissions import BasePermission

from readerstudy.roles import is_coordinator


class IsCoordinator(BasePermission):
    message = "Only study coordinators can do this."

    def has_permission(self, request, view) -> bool:
        return is_coordinator(request.user)
