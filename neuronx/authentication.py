"""`Authorization: Bearer <api key>` authentication, tenant pinning and scope checks."""

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from neuronx import errors
from neuronx.models import ApiKey
from neuronx.operations import operation_of
from neuronx.ratelimit import rate_count_ahead
from neuronx.tenancy import NOT_READ, api_key_authenticate, api_key_lookahead


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiKey]:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.AuthenticationFailed("Send the API key as `Authorization: Bearer <key>`.")
        plaintext = token.strip()
        api_key = api_key_authenticate(
            plaintext=plaintext, cache_entry=self._read_and_count(request, plaintext)
        )
        if api_key is None:
            raise errors.AuthenticationFailed("The API key is unknown or revoked.")
        sent_tenant = request.headers.get("X-Tenant-ID")
        if sent_tenant is not None and sent_tenant not in (api_key.tenant_id, api_key.tenant.slug):
            raise errors.TenantMismatch(
                "X-Tenant-ID names a tenant other than the API key's.",
            )
        return None, api_key

    @staticmethod
    def _read_and_count(request: Request, plaintext: str) -> Any:
        """A key seen before has its cache entry read, and the request counted against its rate,
        in one round trip; the count waits on the request for the view's rate limiter."""
        view = (request.parser_context or {}).get("view")
        op = operation_of(view, getattr(view, "action", None)) if view is not None else None
        lookahead = api_key_lookahead(plaintext=plaintext) if op is not None else None
        if op is None or lookahead is None:
            return NOT_READ
        ahead = rate_count_ahead(
            api_key_id=lookahead.api_key_id,
            rate_limits=lookahead.rate_limits,
            rate_class=op.rate_class,
            read=lookahead.cache_key,
        )
        if ahead is None:
            return NOT_READ
        request._request.rate_counted, entry = ahead  # type: ignore[attr-defined]
        return entry

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
