"""Sweeps: many simulations over axes of dotted keys, stored in SQLite by a hash of their inputs."""
