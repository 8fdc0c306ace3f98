"""Pure domain rules of the container service: no I/O, no project imports outside this package."""
