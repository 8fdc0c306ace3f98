"""crunch-run: runs one container (SPEC §7). Standard library only: see runtimes/ and logs.py."""
