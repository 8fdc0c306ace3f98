"""cwl-crunch: run CWL workflows as container requests on a Crunch2-style container service."""

__version__ = "0.1.0"
