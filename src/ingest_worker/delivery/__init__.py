"""Delivery: the consume loop, batch writers, the outbox publisher, the dead-letter sink."""
