"""Benchmarks: scripts run by hand (see the README), and the rows they share (data)."""
