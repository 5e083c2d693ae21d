"""Helpers for tests of the core and of plugins: tiny models written in real on-disk formats and
reusable contract checks. Nothing here is imported by the CLI at start-up."""
