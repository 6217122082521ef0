"""airspeed velocity (asv) benchmarks for groupnorm-bench (the asv issue fills this in)."""
