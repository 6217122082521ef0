"""What users run: verify, bench, select, fuzz, the self-test, reports, and the tools
behind the docs, asv and the CUDA launch model. Each is a function the CLI
(:mod:`harness.cli`) puts a face on."""
