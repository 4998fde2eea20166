"""Signal sources: one module per source family, and the registry `SOURCES`."""
