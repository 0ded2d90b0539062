"""Benchmark harness and peer implementations behind `fastbp bench`."""
