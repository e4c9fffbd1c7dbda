"""Where the dashboard may send requests: a workspace's API and its webhook, never anything inside
the network it runs in.

A workspace's key goes to its base URL, and a webhook's payload to its address. Both are chosen
by people, so both are checked: when saved (`validate_outbound_url`: a well-formed http(s) URL;
in production https; and not an address inside the network, if it names or resolves to one), and
again at every connection (`outbound_http.GuardedTransport`: the host is resolved, every address
checked with `resolve`, and the connection made to the checked address, so a DNS answer that
changes in between cannot slip through). Loopback, private, link-local, multicast, reserved and
unspecified addresses are refused, unless the destination is this dashboard's own origin (the
scheme, host and port of SITE_URL, where the Sandbox's emulator is served; never another port of
that host) or is listed in OUTBOUND_ALLOWED_HOSTS (a host, any port, or host:port; while
debugging this machine's names, so a local emulator keeps working).
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError


class UnsafeDestination(ConnectionRefusedError):
    """A connection the dashboard refuses to open; the message says why and what to do."""


class Unresolvable(OSError):
    """A host name that does not resolve."""


def _host(name: str) -> str:
    return name.strip().strip("[]").lower().rstrip(".")


def _listed(entry: str) -> tuple[str, int | None]:
    """An OUTBOUND_ALLOWED_HOSTS entry as (host, port or None for any port): `name`,
    `name:8443`, `::1` or `[::1]:8443`."""
    entry = entry.strip()
    if entry.startswith("[") and "]:" in entry:
        host, _, port = entry[1:].partition("]:")
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        return _host(entry), None
    return _host(host), int(port) if port.isdigit() else -1  # -1: a typo matches nothing


def destination_allowed(host: str, port: int, scheme: str | None = None) -> bool:
    """True for this dashboard's own origin and for what the operator listed: a connection
    there is made although the address is inside the network. `scheme` None: any (a
    connection's transport does not know it; the URL was checked with its scheme when saved)."""
    host = _host(host)
    own_scheme, own_host, own_port = settings.SITE_ORIGIN
    if host == own_host and port == own_port and scheme in (None, own_scheme):
        return True
    return any(
        host == listed and allowed_port in (None, port)
        for listed, allowed_port in map(_listed, settings.OUTBOUND_ALLOWED_HOSTS)
    )


def _address_problem(text: str) -> str:
    """Why this IP address is no place to send a key or a payload; empty when it is public."""
    address = ipaddress.ip_address(text.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for kind, test in (
        ("a loopback", address.is_loopback),
        ("an unspecified", address.is_unspecified),
        ("a link-local", address.is_link_local),
        ("a multicast", address.is_multicast),
        ("a private", address.is_private),
        ("a reserved", address.is_reserved or not address.is_global),
    ):
        if test:
            return f"{kind} address"
    return ""


def _fix(host: str) -> str:
    return (
        f"If {host} is yours and meant to be reached from here, add it to OUTBOUND_ALLOWED_HOSTS "
        "(the host, or host:port)."
    )


def _lookup(host: str, port: int) -> list[str]:
    """The distinct addresses getaddrinfo gives for `host`, in its order (its errors propagate)."""
    addresses: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = sockaddr[0]
        # An IPv6 answer in a Python built without IPv6 support comes as (int, bytes): it names
        # no address to check or to connect to, so it is left out.
        if isinstance(address, str) and address not in addresses:
            addresses.append(address)
    return addresses


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` stands for, each checked (UnsafeDestination for any inside the
    network, unless the host is allowed)."""
    try:
        addresses = _lookup(host, port)
    except socket.gaierror as exc:
        raise Unresolvable(f"{host} cannot be resolved ({exc.strerror}).") from None
    if not destination_allowed(host, port):
        for address in addresses:
            problem = _address_problem(address)
            if problem:
                where = (
                    f"{host} is {problem}"
                    if host == address
                    else (f"{host} resolves to {address}, {problem}")
                )
                raise UnsafeDestination(
                    f"{where}: the dashboard does not connect there. " + _fix(host)
                )
    return addresses


def validate_outbound_url(value: str) -> None:
    """A model field's validator: a URL the dashboard may send a key or a payload to."""
    try:
        url = urlsplit(value)
        port = url.port
        host = url.hostname or ""
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValidationError(f"This is not a URL the dashboard can call ({exc}).") from None
    if url.scheme not in ("http", "https") or not host:
        raise ValidationError("Use an http or https address, such as https://api.anthropic.com.")
    if url.username or url.password:
        raise ValidationError("Leave names and passwords out of the address.")
    allowed = destination_allowed(host, port or (443 if url.scheme == "https" else 80), url.scheme)
    if url.scheme != "https" and not settings.DEBUG and not allowed:
        raise ValidationError(
            "Use https: a key or a payload is not sent over plain http. " + _fix(host)
        )
    if allowed:
        return
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [str(literal)] if literal else []
    if literal is None:
        try:
            addresses = _lookup(host, port or 443)
        except (socket.gaierror, UnicodeError):
            # Not resolvable from here now: every connection checks again, after resolving.
            addresses = []
    for address in addresses:
        problem = _address_problem(address)
        if problem:
            where = (
                f"{host} is {problem}" if literal else f"{host} resolves to {address}, {problem}"
            )
            raise ValidationError(
                f"{where}: the dashboard does not send keys or payloads inside its own network. "
                + _fix(host)
            )
