"""Outbound notifications: incident events delivered to HTTP subscriptions (webhooks)."""
