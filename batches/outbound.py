"""Where the dashboard may send requests: a workspace's API and its webhook, never anything inside
the network it runs in.

A workspace's key goes to its base URL, and a webhook's payload to its address. Both are chosen
by people, so both are checked: when saved (`validate_outbound_url`: a well-formed http(s) URL;
in production https; and not an address inside the network, if it names or resolves to one), and
again at every connection (`GuardedTransport`: the host is resolved, every address checked, and
the connection made to the checked address, so a DNS answer that changes in between cannot slip
through). Loopback, private, link-local, multicast, reserved and unspecified addresses are
refused, unless the host is listed in OUTBOUND_ALLOWED_HOSTS (by default, while debugging, this
machine's own names, so the Sandbox and a local emulator keep working).
"""

import ipaddress
import socket

import httpcore
import httpx
from django.conf import settings
from django.core.exceptions import ValidationError


class UnsafeDestination(httpx.ConnectError):
    """A connection the dashboard refuses to open; the message says why and what to do."""


def host_allowed(host: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    return host in {name.strip("[]").lower() for name in settings.OUTBOUND_ALLOWED_HOSTS}


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
        f"If {host} is yours and meant to be reached from here, add it to OUTBOUND_ALLOWED_HOSTS."
    )


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` stands for, each checked (UnsafeDestination for any inside the
    network, unless the host is allowed)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpx.ConnectError(f"{host} cannot be resolved ({exc.strerror}).") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not host_allowed(host):
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


class GuardedBackend(httpcore.SyncBackend):
    """Opens TCP connections only to checked addresses, the ones `resolve` returned."""

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        last_error = None
        for address in resolve(host, port):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as error:
                last_error = error
        raise last_error or httpcore.ConnectError(f"{host} has no address to connect to.")


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport, with a connection pool whose connections go through
    GuardedBackend. TLS still checks the certificate of the host named in the URL."""

    def __init__(self, **kwargs):
        super().__init__(trust_env=False, **kwargs)
        limits = httpx.Limits()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(),
        )


def validate_outbound_url(value: str) -> None:
    """A model field's validator: a URL the dashboard may send a key or a payload to."""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValidationError(f"This is not a URL the dashboard can call ({exc}).") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValidationError("Use an http or https address, such as https://api.anthropic.com.")
    if url.userinfo:
        raise ValidationError("Leave names and passwords out of the address.")
    if url.scheme != "https" and not settings.DEBUG and not host_allowed(url.host):
        raise ValidationError(
            "Use https: a key or a payload is not sent over plain http. " + _fix(url.host)
        )
    if host_allowed(url.host):
        return
    try:
        literal = ipaddress.ip_address(url.host)
    except ValueError:
        literal = None
    addresses = [str(literal)] if literal else []
    if literal is None:
        try:
            infos = socket.getaddrinfo(url.host, url.port or 443, type=socket.SOCK_STREAM)
            addresses = list(dict.fromkeys(info[4][0] for info in infos))
        except (socket.gaierror, UnicodeError):
            # Not resolvable from here now: every connection checks again, after resolving.
            addresses = []
    for address in addresses:
        problem = _address_problem(address)
        if problem:
            where = (
                f"{url.host} is {problem}"
                if literal
                else f"{url.host} resolves to {address}, {problem}"
            )
            raise ValidationError(
                f"{where}: the dashboard does not send keys or payloads inside its own network. "
                + _fix(url.host)
            )
