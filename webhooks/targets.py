"""SSRF protection: which webhook URLs may be registered, and which addresses may be connected to.

A URL is checked twice: when it is registered (`target_check`) and on every attempt, where the
host name is resolved once, every address it resolves to must be public, and the connection is
made to that validated address (`PinnedTransport`), with the original name in `Host` and in TLS
SNI/certificate checks. A name that resolves to a public address at registration and to an
internal one later (DNS rebinding) is therefore refused at connect time.

`WEBHOOK_ALLOW_PRIVATE_TARGETS=true` (development and tests only) allows `http` and any address.
"""

import ipaddress
import socket
import ssl
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Named ranges that are never a webhook receiver (in addition to `is_global` being false).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetForbidden(Exception):
    """The URL or an address it resolves to may not be called; `code` names why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def allow_private() -> bool:
    return bool(settings.WEBHOOK_ALLOW_PRIVATE_TARGETS)


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the edge tests patch to simulate DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_problem(address: IPAddress) -> str | None:
    """Why `address` may not be connected to, or None for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        embedded = address.sixtofour or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
        )
        if embedded is not None and address_problem(embedded):
            return f"an IPv6 address embedding {address_problem(embedded)}"
        if address.teredo is not None:
            return "a Teredo tunnel address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if isinstance(address, ipaddress.IPv4Address) and address in ipaddress.ip_network(
        "100.64.0.0/10"
    ):
        return "a carrier-grade NAT (shared) address"
    if address.is_private:
        return "a private, reserved or documentation address"
    if not address.is_global:
        return "a non-public address"
    return None


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise TargetForbidden("invalid", f"Not a valid URL: {exc}.") from None
    return parts


def target_parse(url: str) -> Target:
    """Syntax and policy checks that need no DNS: scheme, credentials, host, port, length."""
    if len(url) > settings.WEBHOOK_URL_MAX_LENGTH:
        raise TargetForbidden(
            "max_length", f"At most {settings.WEBHOOK_URL_MAX_LENGTH} characters."
        )
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise TargetForbidden("invalid", "Not a valid URL: it contains whitespace or controls.")
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise TargetForbidden("invalid", "Not a valid URL: send an absolute `https://` URL.")
    if scheme == "http" and not allow_private():
        raise TargetForbidden("https_required", "The URL must use `https`.")
    if parts.username is not None or parts.password is not None:
        raise TargetForbidden(
            "credentials_not_allowed",
            "The URL may not contain credentials; authenticate with the webhook signature.",
        )
    if parts.fragment:
        raise TargetForbidden("invalid", "The URL may not contain a `#fragment`.")
    host = parts.hostname.rstrip(".")
    try:
        host.encode("idna")
    except UnicodeError:
        raise TargetForbidden("invalid", "Not a valid host name.") from None
    port = parts.port or (443 if scheme == "https" else 80)
    return Target(scheme=scheme, host=host, port=port)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def target_addresses(target: Target) -> list[str]:
    """Resolve the target once and check every address; returns them (validated) in order."""
    literal = _literal(target.host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolve(target.host, target.port)
        except (OSError, UnicodeError):
            raise TargetForbidden(
                "unresolvable_host", f"The host {target.host!r} does not resolve."
            ) from None
        if not addresses:
            raise TargetForbidden(
                "unresolvable_host", f"The host {target.host!r} does not resolve."
            )
    if not allow_private():
        for address in addresses:
            problem = address_problem(ipaddress.ip_address(address.split("%")[0]))
            if problem is not None:
                what = "is" if literal is not None else f"resolves to {address}, which is"
                raise TargetForbidden("forbidden_target", f"The host {what} {problem}.")
    return addresses


def target_check(url: str) -> None:
    """Registration: the URL is well formed and every address its host resolves to is public.

    With private targets allowed nothing is resolved (a development receiver may not exist yet).
    """
    target = target_parse(url)
    if not allow_private():
        target_addresses(target)


@cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs milliseconds; one context per process serves every attempt.
    return httpx.create_ssl_context()


class PinnedTransport(httpx.BaseTransport):
    """Connects only to an address validated at connect time, however often DNS changes."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport(verify=_ssl_context(), retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = target_parse(str(request.url))
        address = target_addresses(target)[0]
        if _literal(target.host) is None:
            # `Host` was set from the original URL when the request was built; keep it, and
            # have TLS present and verify the original name.
            request.extensions = {**request.extensions, "sni_hostname": target.host}
            request.url = request.url.copy_with(host=address)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()

    def __exit__(self, *args: Any) -> None:
        self.close()
