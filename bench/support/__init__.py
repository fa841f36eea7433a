"""Helpers shared by the benchmarks (a package, so `make bench`'s `bench/*.py` loop does not run it)."""
