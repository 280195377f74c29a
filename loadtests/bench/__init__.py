"""The benchmark harness (`make bench`, `make bench-smoke`): see loadtests/README.md and `python -m
loadtests.bench --help`."""
