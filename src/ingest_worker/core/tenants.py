"""Tenants (pure): the id syntax, the default tenant, and the ids that depend on the tenant.

A record names its tenant outside its payload (a Kafka header, a topic prefix, an HTTP
credential). The default tenant keeps the ids it had before tenants existed, so its rows,
hashes and replays stay valid; any other tenant's incident ids are uuid5 of
`incident:<tenant>/<incident_key>` (and `#<episode>` after the first episode).
"""

from __future__ import annotations

import re

#: The tenant of records that name none.
DEFAULT_TENANT = "default"

#: A tenant id (also enforced by a CHECK constraint on every table holding tenant data).
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class InvalidTenant(ValueError):
    """A tenant id that does not match `TENANT_PATTERN`."""


def check_tenant(value: str) -> str:
    """`value` when it is a valid tenant id; otherwise InvalidTenant (never echoing it)."""
    if TENANT_PATTERN.fullmatch(value) is None:
        raise InvalidTenant(
            "a tenant id is 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit"
        )
    return value


def tenant_name(tenant: str, name: str) -> str:
    """The name an id of `tenant` is derived from: `name` itself for the default tenant."""
    return name if tenant == DEFAULT_TENANT else f"{tenant}/{name}"
