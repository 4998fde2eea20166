"""Outbound safety: which addresses a notification may be sent to.

A destination's host is resolved before every attempt and the request goes to the address that
was checked (the host name stays in `Host` and in TLS's SNI and certificate check), so a name
that resolves to an internal address later (DNS rebinding) is caught too. Private, loopback,
link-local and other non-global addresses are refused unless a configured network holds them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
#: How long a checked name's address is reused (a resolver call per request is too slow at
#: a thousand events a second; the request still goes to the checked address).
RESOLVE_TTL_SECONDS = 30.0


class DestinationRefused(Exception):
    """The destination resolves to an address notifications may not go to."""


@dataclass(frozen=True)
class DestinationPolicy:
    """Addresses that are not global are refused unless one of `allowed` holds them."""

    allowed: tuple[Network, ...] = ()
    #: (host, port) → (monotonic expiry, checked address)
    _cache: dict[tuple[str, int], tuple[float, Address]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def from_config(cls, networks: Sequence[str], *, allow_loopback: bool) -> DestinationPolicy:
        """ValueError on a network that does not parse."""
        names = [*networks, *(LOOPBACK_NETWORKS if allow_loopback else ())]
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in names))

    def permits(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed):
            return True
        return address.is_global and not address.is_multicast

    async def resolve(self, host: str, port: int) -> Address:
        """The first address of `host`, checked; DestinationRefused when one is not permitted."""
        cached = self._cache.get((host, port))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        address = await self._resolve(host, port)
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[(host, port)] = (time.monotonic() + RESOLVE_TTL_SECONDS, address)
        return address

    async def _resolve(self, host: str, port: int) -> Address:
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            candidates: list[Address] = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except OSError as exc:
                raise DestinationRefused(f"cannot resolve {host}: {exc.strerror or exc}") from None
            candidates = [ipaddress.ip_address(info[4][0]) for info in infos]
        for address in candidates:
            if not self.permits(address):
                # One refused address refuses the name: the client must not pick it later.
                raise DestinationRefused(f"{host} resolves to {address}, not an allowed address")
        if not candidates:
            raise DestinationRefused(f"{host} has no address")
        return candidates[0]
