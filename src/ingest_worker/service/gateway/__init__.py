"""The webhook gateway: HTTP from alerting tools → the source topics, acks=all.

Stateless: it authenticates, validates with the worker's own decoding, produces, and answers
202 only once the broker acknowledged. The worker stays the only writer of the store.
"""

from __future__ import annotations

from ingest_worker.service.gateway.app import create_app
from ingest_worker.service.gateway.server import GatewayServer, serve
from ingest_worker.service.gateway.settings import GatewaySettings

__all__ = ["GatewayServer", "GatewaySettings", "create_app", "serve"]
