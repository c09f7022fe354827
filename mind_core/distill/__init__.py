"""The three MIND stages: describe each product, generate one intention per (pair, relation), role-aware filter."""
