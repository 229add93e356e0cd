from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from neuronx import errors
from neuronx.models import ApiKey
from neuronx.operations import operation_of


class OperationScopePermission(BasePermission):
    """The API key must carry the scope the operation declares."""

    def has_permission(self, request: Request, view: Any) -> bool:
        op = operation_of(view, getattr(view, "action", None) or (request.method or "").lower())
        if op is None:
            return False
        api_key = request.auth
        if not isinstance(api_key, ApiKey) or op.scope not in api_key.scopes:
            raise errors.PermissionDenied(
                f"The API key lacks the `{op.scope}` scope.", required_scope=op.scope
            )
        return True
