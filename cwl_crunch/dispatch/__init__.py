"""Dispatchers: lock Queued containers by priority and hand them to a backend (local, Slurm)."""
