from django.db import transaction
from django.utils import timezone

from neuronx.context import Actor
from neuronx.inserts import insert
from usage.models import DIMENSIONS, UsageEvent


def usage_record(*, actor: Actor, dimension: str, quantity: int = 1) -> UsageEvent | None:
    """Record `quantity` of `dimension` for the actor's tenant.

    Call it inside the action's transaction so the event commits or rolls back with the action.
    Metering is observational: it never changes what the caller does. A zero quantity writes nothing.
    """
    assert dimension in DIMENSIONS, dimension
    assert transaction.get_connection().in_atomic_block, "usage must be recorded inside the action"
    if quantity <= 0:
        return None
    return insert(
        UsageEvent(
            tenant=actor.tenant,
            dimension=dimension,
            quantity=quantity,
            occurred_at=timezone.now(),
            request_id=actor.request_id,
            api_key=actor.api_key,
            source=actor.label,
        )
    )
