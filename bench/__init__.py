"""Router micro-benchmarks (pytest-benchmark); run with `make bench`, see bench/README.md."""
