"""Statistics: per-batch reducers, aggregators across samples, and collection through an engine."""
