"""The pure core: values, canonical JSON, redaction, the incident fold, events, batch plans.

Imports nothing from faststream, aiokafka, asyncpg or pydantic, nor from the other folders."""
