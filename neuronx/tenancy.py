"""Tenant and API key services and selectors."""

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from neuronx.models import RATE_CLASSES, SCOPES, ApiKey, Tenant

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


def api_key_authenticate(*, plaintext: str) -> ApiKey | None:
    """The active key matching `plaintext`, found by prefix and compared in constant time."""
    match = _KEY_SHAPE.match(plaintext)
    if match is None:
        return None
    api_key = (
        ApiKey.objects.select_related("tenant")
        .filter(prefix=match.group(1), revoked_at__isnull=True)
        .first()
    )
    if api_key is None or not hmac.compare_digest(api_key.key_hash, _hash_key(plaintext)):
        return None
    return api_key


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
