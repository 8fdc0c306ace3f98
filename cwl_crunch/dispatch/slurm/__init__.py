"""Slurm as a dispatch backend: its commands behind one small interface (`base.Slurm`), the real
commands (`commands`), a recording stand-in for tests (`fake`), and the pure decisions (`batch`)."""
