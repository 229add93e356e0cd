from typing import Any

from django.db import transaction

from neuronx.context import Actor
from webhooks.events import EVENT_TYPES
from webhooks.models import Event


def event_publish(*, actor: Actor, type: str, data: dict[str, Any]) -> Event:
    """Write an outbound event to the outbox, inside the caller's transaction.

    The event commits or rolls back with the change that caused it; delivery happens after
    commit, so no subscriber ever hears of a change that did not happen.
    """
    assert type in EVENT_TYPES, type
    assert transaction.get_connection().in_atomic_block, "events must be published in the action"
    return Event.objects.create(
        tenant=actor.tenant, type=type, data=data, request_id=actor.request_id
    )
