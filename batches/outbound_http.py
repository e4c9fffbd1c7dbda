"""The HTTP transport of every outbound call (the API client, webhooks): httpx's own, whose
connections go only to addresses `batches.outbound.resolve` checked."""

from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from batches.outbound import Unresolvable, UnsafeDestination, resolve


class BlockedDestination(httpx.ConnectError):
    """httpx's error for a connection the dashboard refused to open."""


class GuardedBackend(httpcore.SyncBackend):
    """Opens TCP connections only to checked addresses, the ones `resolve` returned."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        last_error: httpcore.ConnectError | None = None
        try:
            addresses = resolve(host, port)
        except UnsafeDestination as refused:
            raise BlockedDestination(str(refused)) from None
        except Unresolvable as error:
            raise httpcore.ConnectError(str(error)) from None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as error:
                last_error = error
        raise last_error or httpcore.ConnectError(f"{host} has no address to connect to.")


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport, with a connection pool whose connections go through
    GuardedBackend. TLS still checks the certificate of the host named in the URL."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trust_env=False, **kwargs)
        limits = httpx.Limits()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(),
        )
