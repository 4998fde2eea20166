"""How the CLI fails: one sentence on stderr, exit 2 for usage and 1 for runtime, never a traceback.

Commands raise `CliError` (or `UsageError`) with a sentence naming what was wrong and what to do;
`explain` turns anything else that escapes a command (a driver error, a bad setting) into one.
The connection helpers here translate "nothing listens there" into such a sentence, and always
close what they opened (an unclosed Kafka client prints a warning at exit).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from typing import Any, NoReturn, Protocol, TypeVar

import asyncpg
from pydantic import ValidationError

from ingest_worker.service.config import Settings, mask_url

#: Exit codes: a mistake in the command line or the configuration; a failure while running.
USAGE, RUNTIME = 2, 1

START_DEV = (
    "is it running? For the dev services run `ingest-worker dev` (or `make run`) and add --dev"
)


class CliError(Exception):
    """A failure the user can act on: `message` is printed as it is, the exit code is `code`."""

    def __init__(self, message: str, code: int = RUNTIME) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class UsageError(CliError):
    """A mistake in the command line or the configuration (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, USAGE)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`ingest-worker send: …; see …--help`) raised, not printed."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _setting_name(location: tuple[Any, ...], prefix: str) -> str:
    return prefix + "_".join(str(part) for part in location).upper() if location else prefix


def describe_settings_error(exc: ValidationError, prefix: str = "INGEST_") -> str:
    """`INGEST_HTTP_PORT: Input should be …` for each wrong variable, without its value."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    return "; ".join(f"{_setting_name(e['loc'], prefix)}: {e['msg']}" for e in errors)


def explain(exc: BaseException) -> tuple[str, int]:
    """The sentence and exit code for an exception that escaped a command."""
    from aiokafka.errors import KafkaError

    from ingest_worker.core.lifecycle import PolicyError
    from ingest_worker.service.dev_addresses import DevAddressError
    from ingest_worker.service.embedded import EmbeddedServiceError

    if isinstance(exc, CliError):
        return exc.message, exc.code
    if isinstance(exc, ValidationError):
        prefix = "INGEST_GATEWAY_" if exc.title == "GatewaySettings" else "INGEST_"
        return f"invalid configuration: {describe_settings_error(exc, prefix)}", USAGE
    if isinstance(exc, DevAddressError | PolicyError):
        return f"invalid configuration: {exc}", USAGE
    if isinstance(exc, asyncpg.UndefinedTableError) or (
        isinstance(exc, asyncpg.PostgresError) and 'role "ingest_reader" does not exist' in str(exc)
    ):
        return (
            "the database has no ingest-worker tables yet: run `ingest-worker migrate` first "
            "(with --dev for the dev services)",
            RUNTIME,
        )
    if isinstance(exc, asyncpg.PostgresError):
        return f"PostgreSQL refused the query: {exc}", RUNTIME
    if isinstance(exc, KafkaError):
        return f"the Kafka broker failed: {exc}", RUNTIME
    if isinstance(exc, EmbeddedServiceError):
        return f"the dev services could not start: {exc}", RUNTIME
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}", RUNTIME
    return f"unexpected error ({type(exc).__name__}: {exc}); please report it", RUNTIME


async def connect_postgres(settings: Settings) -> asyncpg.Connection:
    """A connection to `INGEST_DATABASE_URL`, or a `CliError` saying why there is none."""
    url = settings.database_url.get_secret_value()
    where = mask_url(url)
    try:
        return await asyncpg.connect(url, timeout=10)
    except (OSError, TimeoutError) as exc:
        reason = "no answer in 10 s" if isinstance(exc, TimeoutError) else "connection refused"
        raise CliError(
            f"cannot reach PostgreSQL at {where} ({reason}): {START_DEV}; otherwise set "
            "INGEST_DATABASE_URL to your database"
        ) from None
    except asyncpg.InvalidCatalogNameError:
        raise CliError(
            f"PostgreSQL at {where} has no such database: create it, or fix INGEST_DATABASE_URL"
        ) from None
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
        raise CliError(
            f"PostgreSQL at {where} refused the user or password of INGEST_DATABASE_URL"
        ) from None
    except asyncpg.PostgresError as exc:
        raise CliError(f"PostgreSQL at {where} refused the connection: {exc}") from None


class KafkaClient(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


K = TypeVar("K", bound=KafkaClient)


@contextlib.asynccontextmanager
async def started(client: K, settings: Settings) -> AsyncIterator[K]:
    """`client` started, and stopped on the way out; a broker that does not answer is a
    `CliError` (the client is stopped all the same, so that no 'Unclosed' warning follows)."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    try:
        await client.start()
    except (KafkaError, OSError, TimeoutError) as exc:
        with contextlib.suppress(Exception):
            await client.stop()
        servers = settings.kafka_bootstrap_servers
        if isinstance(exc, KafkaConnectionError | OSError | TimeoutError):
            raise CliError(
                f"cannot reach the Kafka broker at {servers}: {START_DEV}; otherwise set "
                "INGEST_KAFKA_BOOTSTRAP_SERVERS to your broker"
            ) from None
        raise CliError(f"the Kafka broker at {servers} failed: {exc}") from None
    try:
        yield client
    finally:
        await client.stop()
