"""Where the services of `ingest-worker dev` listen: one function decides, for `dev` (and so
`make run`) and for every command's `--dev`, so that they always meet."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

#: The ports of `ingest-worker dev` (and `make run`) unless the variables below say otherwise.
DEV_PORTS: dict[str, int] = {
    "INGEST_DEV_POSTGRES_PORT": 54329,
    "INGEST_DEV_KAFKA_PORT": 9092,
    "INGEST_HTTP_PORT": 8080,
    "INGEST_GATEWAY_PORT": 8081,
}


class DevAddressError(ValueError):
    """A dev port variable that is not a port number."""


@dataclass(frozen=True, slots=True)
class DevAddresses:
    """Where the services of `ingest-worker dev` listen, and how the CLI's `--dev` reaches them.

    `database_url` and `kafka_bootstrap_servers` are those of the embedded services unless
    `INGEST_DATABASE_URL` / `INGEST_KAFKA_BOOTSTRAP_SERVERS` are set, which win everywhere.
    """

    postgres_port: int
    kafka_port: int
    http_port: int
    gateway_port: int
    database_url: str
    kafka_bootstrap_servers: str

    def environment(self) -> dict[str, str]:
        """The `INGEST_*` variables that point the worker, the gateway and the CLI here."""
        return {
            "INGEST_DATABASE_URL": self.database_url,
            "INGEST_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "INGEST_HTTP_PORT": str(self.http_port),
            "INGEST_GATEWAY_PORT": str(self.gateway_port),
        }


def _port(environ: Mapping[str, str], name: str) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return DEV_PORTS[name]
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise DevAddressError(f"{name}={text!r} is not a port number (1-65535)")
    return int(text)


def dev_addresses(environ: Mapping[str, str] | None = None) -> DevAddresses:
    """The one place that decides the dev addresses, for `ingest-worker dev` and every `--dev`."""
    env = os.environ if environ is None else environ
    postgres, kafka = _port(env, "INGEST_DEV_POSTGRES_PORT"), _port(env, "INGEST_DEV_KAFKA_PORT")
    return DevAddresses(
        postgres_port=postgres,
        kafka_port=kafka,
        http_port=_port(env, "INGEST_HTTP_PORT"),
        gateway_port=_port(env, "INGEST_GATEWAY_PORT"),
        database_url=env.get("INGEST_DATABASE_URL")
        or f"postgresql://postgres:postgres@127.0.0.1:{postgres}/postgres",
        kafka_bootstrap_servers=env.get("INGEST_KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{kafka}",
    )
