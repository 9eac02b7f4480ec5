"""Local services andchain starts for development, tests and benchmarks."""
