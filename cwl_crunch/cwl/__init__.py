"""`cwl-crunch`: the CWL workflow runner, a cwltool executor on the container service (SPEC §10)."""
