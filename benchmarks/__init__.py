"""Benchmarks: physics throughput, training throughput as a ratio to it, compile time."""
