"""One exception root, split into bad input (permanent: dead-letter) and transient faults (retry)."""

from __future__ import annotations

from enum import StrEnum


class IngestError(Exception):
    """Root of every error this package raises on purpose."""


class RejectReason(StrEnum):
    """Stable `x-dlq-reason` codes of the dead-letter topic."""

    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    TOO_LARGE = "too_large"
    UNMAPPABLE = "unmappable"
    EMPTY_VALUE = "empty_value"
    UNPROCESSABLE = "unprocessable"
    #: A group record (an Alertmanager or Grafana notification) with invalid parts: the valid
    #: parts are applied, the record is dead-lettered too, its message naming the bad parts.
    PARTIALLY_INVALID = "partially_invalid"
    #: The record's tenant (its `tenant` header) is not a valid tenant id.
    INVALID_TENANT = "invalid_tenant"


class InvalidSignal(IngestError):
    """The record can never be processed as it is: it goes to the dead-letter topic."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class TransientError(IngestError):
    """A dependency is unavailable for now (database, broker, timeout): retry, never dead-letter."""


class PermanentStoreError(IngestError):
    """The store rejected an input for a reason retrying cannot fix (a bug or an unforeseen value)."""


class ShutdownRequested(IngestError):
    """Raised out of a retry loop when the worker is asked to stop: the batch must not be committed."""
