"""Tenant and API key services and selectors."""

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Model
from django.db.models.base import ModelState
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from neuronx.models import RATE_CLASSES, SCOPES, ApiKey, Tenant

M = TypeVar("M", bound=Model)

logger = logging.getLogger("neuronx.tenancy")

KEY_PREFIX = "nxk"
_KEY_SHAPE = re.compile(rf"^{KEY_PREFIX}_([a-z0-9]{{12}})_([A-Za-z0-9]{{40}})$")
_RATE_SHAPE = re.compile(r"^[1-9][0-9]{0,8}/(?:[1-9][0-9]{0,5})?[smhd]$")
_SLUG_SHAPE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ALPHANUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_ALPHANUM_MIXED = _ALPHANUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class TenancyError(ValueError):
    """Bad input to an internal tenancy command."""


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str


def _hash_key(plaintext: str) -> str:
    return hmac.new(
        settings.API_KEY_HASH_KEY.encode(), plaintext.encode(), hashlib.sha256
    ).hexdigest()


@transaction.atomic
def tenant_create(*, slug: str, name: str = "") -> Tenant:
    """Create a tenant; the slug is its stable handle for the internal team."""
    if not _SLUG_SHAPE.match(slug):
        raise TenancyError(
            f"Slug {slug!r} must be 1–63 characters of lowercase letters, digits and hyphens."
        )
    if Tenant.objects.filter(slug=slug).exists():
        raise TenancyError(f"Tenant {slug!r} already exists.")
    return Tenant.objects.create(slug=slug, name=name or slug)


def tenant_get_by_slug(*, slug: str) -> Tenant:
    try:
        return Tenant.objects.get(slug=slug)
    except Tenant.DoesNotExist:
        raise TenancyError(f"No tenant {slug!r}.") from None


def scopes_parse(raw: str | Iterable[str] | None) -> list[str]:
    if raw is None:
        return list(SCOPES)
    items = [s.strip() for s in (raw.split(",") if isinstance(raw, str) else raw) if s.strip()]
    unknown = sorted(set(items) - set(SCOPES))
    if unknown or not items:
        raise TenancyError(
            f"Unknown scopes {unknown}; choose from {', '.join(SCOPES)}."
            if unknown
            else "At least one scope is required."
        )
    return sorted(set(items), key=SCOPES.index)


@transaction.atomic
def api_key_create(
    *, tenant: Tenant, name: str = "", scopes: Iterable[str] | None = None
) -> IssuedKey:
    """Issue a key. The plaintext is returned once and only its keyed hash is stored."""
    prefix = "".join(secrets.choice(_ALPHANUM) for _ in range(12))
    secret = "".join(secrets.choice(_ALPHANUM_MIXED) for _ in range(40))
    plaintext = f"{KEY_PREFIX}_{prefix}_{secret}"
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=prefix,
        key_hash=_hash_key(plaintext),
        scopes=scopes_parse(list(scopes) if scopes is not None else None),
    )
    return IssuedKey(api_key=api_key, plaintext=plaintext)


NOT_READ: Any = object()  # `api_key_authenticate`: the cache entry is still to be read


def api_key_authenticate(*, plaintext: str, cache_entry: Any = NOT_READ) -> ApiKey | None:
    """The active key matching `plaintext`, found by prefix and compared in constant time.

    Active keys are kept in the shared cache (`API_KEY_CACHE_SECONDS`); a revocation, or any
    other change to a key or its tenant, takes effect on the next request all the same.
    `cache_entry`: the value of the key's cache entry (None: no entry) when the caller has just
    read it (`api_key_lookahead`).
    """
    match = _KEY_SHAPE.match(plaintext)
    if match is None:
        return None
    prefix = match.group(1)
    if cache_entry is NOT_READ:
        api_key = _api_key_cached(prefix)
    else:
        api_key = cache_entry if isinstance(cache_entry, ApiKey) else None
    if api_key is None:
        looked_up = time.monotonic()
        try:
            api_key = ApiKey.objects.select_related("tenant").get(
                prefix=prefix, revoked_at__isnull=True
            )
        except ApiKey.DoesNotExist:
            return None
        _api_key_cache_add(api_key, looked_up)
    key_hash = _hash_key(plaintext)
    if not hmac.compare_digest(api_key.key_hash, key_hash):
        return None
    seen = _KeySeen(key_hash, api_key.id, api_key.tenant.rate_limits)
    if _seen.get(prefix) != seen:
        if len(_seen) >= _SEEN_MAX:
            _seen.clear()
        _seen[prefix] = seen
    return api_key


@dataclass(frozen=True)
class KeyLookahead:
    """Where a key's cache entry is, and what this process last found behind the key."""

    cache_key: str
    api_key_id: str
    rate_limits: dict[str, str]


@dataclass(frozen=True)
class _KeySeen:
    key_hash: str
    api_key_id: str
    rate_limits: dict[str, str]


# Keys this process authenticated, by prefix: enough to count a request of the same key in the
# round trip that reads its cache entry. Only a guess: every request is authenticated from the
# entry it reads, and a count made for another key or rate is not used (`rate_consume`).
_seen: dict[str, _KeySeen] = {}
_SEEN_MAX = 10_000


def api_key_lookahead(*, plaintext: str) -> KeyLookahead | None:
    """For a plaintext that authenticated in this process before (the whole key, so a caller
    knowing only a prefix cannot have another key's requests counted), its cache entry's name,
    the key's id and its tenant's rate overrides as they were then. None otherwise."""
    if settings.API_KEY_CACHE_SECONDS <= 0:
        return None
    match = _KEY_SHAPE.match(plaintext)
    if match is None:
        return None
    prefix = match.group(1)
    seen = _seen.get(prefix)
    if seen is None or not hmac.compare_digest(seen.key_hash, _hash_key(plaintext)):
        return None
    return KeyLookahead(_api_key_cache_key(prefix), seen.api_key_id, seen.rate_limits)


# -- cache entries read on the request path ----------------------------------------------------

_DECODED: dict[bytes, ApiKey] = {}
_DECODED_MAX = 1_000


def api_key_entry(raw: bytes, decode: Callable[[bytes], Any]) -> Any:
    """A key's cache entry as read from the cache (`raw`), decoded by `decode`. An active key
    comes back as unpickling `raw` gives it, a key with its own tenant, but each entry is
    unpickled once per process: a copy costs a few µs, unpickling a key and its tenant ~60.
    A changed entry (a tombstone, a key written again) is other bytes, decoded afresh."""
    known = _DECODED.get(raw)
    if known is None:
        value = decode(raw)
        if not isinstance(value, ApiKey):
            return value
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        _DECODED[raw] = known = value
    return _copy(known)


def _copy(instance: M) -> M:
    """Another instance with the same values, as unpickling gives one: its own attributes, model
    state and related instances, and its own copies of JSON lists and dicts (one level deep).

    For what the key cache holds: a key and its tenant (no cycle among related instances),
    whose JSON fields are flat (`scopes`, a list of names; `rate_limits`, names to rates)."""
    clone = instance.__class__.__new__(instance.__class__)
    values = clone.__dict__
    for name, value in instance.__dict__.items():
        if name != "_state":
            values[name] = value.copy() if isinstance(value, dict | list) else value
    state = ModelState()
    state.db, state.adding = instance._state.db, instance._state.adding
    state.fields_cache = {
        name: _copy(related) if isinstance(related, Model) else related
        for name, related in instance._state.fields_cache.items()
    }
    clone._state = state
    return clone


# -- the API key cache -----------------------------------------------------------------------
#
# Entries are only ever *added*, never overwritten. A change to a key or a tenant replaces the
# entries concerned with a tombstone, at once and again when it commits, so a request that read
# the key before the change cannot cache what it read: its add finds the tombstone (it gives up
# when its own read is older than half the tombstone's lifetime). Without a cache (it is down)
# every key is looked up in the database.

_TOMBSTONE = "changed"


def _api_key_cache_key(prefix: str) -> str:
    return f"neuronx:api-key:{prefix}"


def _api_key_cached(prefix: str) -> ApiKey | None:
    if settings.API_KEY_CACHE_SECONDS <= 0:
        return None
    try:
        entry = cache.get(_api_key_cache_key(prefix))
    except Exception:
        logger.warning("API key cache unavailable; looking keys up in the database", exc_info=True)
        return None
    return entry if isinstance(entry, ApiKey) else None


def _api_key_cache_add(api_key: ApiKey, looked_up: float) -> None:
    lifetime = settings.API_KEY_CACHE_SECONDS
    if lifetime <= 0 or time.monotonic() - looked_up > lifetime / 2:
        return
    try:
        cache.add(_api_key_cache_key(api_key.prefix), api_key, timeout=lifetime)
    except Exception:
        logger.warning("API key cache unavailable; key not cached", exc_info=True)


def _api_key_cache_forget(prefixes: list[str]) -> None:
    if settings.API_KEY_CACHE_SECONDS <= 0 or not prefixes:
        return
    tombstones = {_api_key_cache_key(prefix): _TOMBSTONE for prefix in prefixes}

    def bury() -> None:
        try:
            cache.set_many(tombstones, timeout=settings.API_KEY_CACHE_SECONDS)
        except Exception:
            logger.warning("API key cache unavailable; entries not replaced", exc_info=True)

    bury()
    transaction.on_commit(bury)


@receiver([post_save, post_delete], sender=ApiKey)
def _api_key_changed(sender: type, instance: ApiKey, created: bool = False, **kwargs: Any) -> None:
    if not created:
        _api_key_cache_forget([instance.prefix])


@receiver([post_save, post_delete], sender=Tenant)
def _tenant_changed(sender: type, instance: Tenant, created: bool = False, **kwargs: Any) -> None:
    if not created:
        prefixes = ApiKey.objects.filter(tenant_id=instance.pk).values_list("prefix", flat=True)
        _api_key_cache_forget(list(prefixes))


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def rate_validate(rate: str) -> str:
    if not _RATE_SHAPE.match(rate):
        raise TenancyError(f"Rate {rate!r} is not like 5/m, 100/h, 10/30s or 1000/d.")
    return rate


@transaction.atomic
def tenant_set_rate_limit(*, tenant: Tenant, rate_class: str, rate: str) -> Tenant:
    """Override one rate-limit class for every key of the tenant."""
    if rate_class not in RATE_CLASSES:
        raise TenancyError(f"Unknown class {rate_class!r}; choose from {', '.join(RATE_CLASSES)}.")
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    tenant.rate_limits = {**tenant.rate_limits, rate_class: rate_validate(rate)}
    tenant.save(update_fields=["rate_limits"])
    return tenant
