"""`Authorization: Bearer <api key>` authentication, tenant pinning and scope checks."""

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from neuronx import errors
from neuronx.models import ApiKey
from neuronx.tenancy import api_key_authenticate


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiKey]:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.AuthenticationFailed("Send the API key as `Authorization: Bearer <key>`.")
        api_key = api_key_authenticate(plaintext=token.strip())
        if api_key is None:
            raise errors.AuthenticationFailed("The API key is unknown or revoked.")
        sent_tenant = request.headers.get("X-Tenant-ID")
        if sent_tenant is not None and sent_tenant not in (api_key.tenant_id, api_key.tenant.slug):
            raise errors.TenantMismatch(
                "X-Tenant-ID names a tenant other than the API key's.",
            )
        return None, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
