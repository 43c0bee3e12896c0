"""Benchmarks of the gateway against a floor relay and the direct upstream."""
