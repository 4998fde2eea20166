"""The service shell: settings, wiring, CLI, HTTP health and metrics, logging, embedded services."""
