"""Embedding file formats. Each format is registered through ``register_formats``."""
