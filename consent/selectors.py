from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from consent.models import CONSENT_SCOPES, ConsentRecord
from neuronx import errors


@dataclass(frozen=True)
class ScopeState:
    scope: str
    state: str  # granted | revoked | expired | not_captured
    record: ConsentRecord | None

    @property
    def granted(self) -> bool:
        return self.state == "granted"


def consent_history(*, lead: Any) -> list[ConsentRecord]:
    """The lead's ledger, newest capture first (ties: latest recorded first)."""
    return list(ConsentRecord.objects.filter(lead_id=lead.pk).order_by("-captured_at", "-id"))


def consent_state(
    *, lead: Any, history: list[ConsentRecord] | None = None, at: datetime | None = None
) -> dict[str, ScopeState]:
    """Current state of every scope: the latest record by `captured_at` wins; expiry revokes."""
    now = at or timezone.now()
    records = history if history is not None else consent_history(lead=lead)
    latest: dict[str, ConsentRecord] = {}
    for entry in records:  # newest first, so the first seen per scope is the latest
        if entry.captured_at <= now:
            latest.setdefault(entry.scope, entry)
    states = {}
    for scope in CONSENT_SCOPES:
        record = latest.get(scope)
        if record is None:
            state = "not_captured"
        elif not record.granted:
            state = "revoked"
        elif record.expires_at is not None and record.expires_at <= now:
            state = "expired"
        else:
            state = "granted"
        states[scope] = ScopeState(scope=scope, state=state, record=record)
    return states


def consent_require(*, lead: Any, scopes: tuple[str, ...]) -> None:
    """Raise `consent_required` naming every scope in `scopes` the lead has not granted now."""
    if not scopes:
        return
    states = consent_state(lead=lead)
    missing = [scope for scope in scopes if not states[scope].granted]
    if missing:
        raise errors.ConsentRequired(
            f"The lead has not granted: {', '.join(missing)}.", missing_scopes=missing
        )
