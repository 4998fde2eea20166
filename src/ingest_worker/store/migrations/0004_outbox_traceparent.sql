-- Tracing (README "Tracing"): the W3C `traceparent` of the span that wrote an event, published
-- with it as the Kafka header `traceparent`. NULL while tracing is off (no header then).
ALTER TABLE outbox ADD COLUMN traceparent text;
