"""What is run: cases (one printable id each), their seeded inputs, the named suites, the
workload shapes of real models, and a sweep's plan (cases x backend/device pairs)."""
