"""Who is acting, and for which request: passed explicitly to every service."""

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neuronx.models import ApiKey, Tenant

# The current request id, for log lines written anywhere during the request.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


@dataclass(frozen=True)
class Actor:
    """The tenant an action runs for and who asked: an API key, or an internal operator."""

    tenant: "Tenant"
    api_key: "ApiKey | None" = None
    request_id: str = ""
    internal: str = ""

    @property
    def label(self) -> str:
        if self.api_key is not None:
            return f"api_key:{self.api_key.id}"
        return f"internal:{self.internal or 'system'}"

    @classmethod
    def system(cls, tenant: "Tenant", name: str = "shell") -> "Actor":
        return cls(tenant=tenant, internal=name, request_id=request_id_var.get() or "")
