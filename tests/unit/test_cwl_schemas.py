"""cwltool loads one CWL schema per process, not two (cwl_crunch.cwl.schemas)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# In a fresh interpreter: cwltool's module globals must start empty for the check to mean anything.
PROBE = textwrap.dedent("""
    import sys
    from cwltool import process
    from cwltool.context import LoadingContext
    from cwltool.load_tool import load_tool
    from cwltool.workflow import default_make_tool
    from cwl_crunch.cwl.schemas import share_core_types

    def make_tool(document, loading):
        if sys.argv[2] == "share":
            share_core_types()
        return default_make_tool(document, loading)

    loading = LoadingContext()
    loading.construct_tool_object = make_tool
    tool = load_tool(sys.argv[1], loading)
    print(sorted(process.SCHEMA_CACHE), type(tool).__name__)
""")


def _loaded_schemas(document: Path, mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, str(document), mode], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_v1_2_workflow_loads_only_the_v1_2_schema() -> None:
    assert _loaded_schemas(EXAMPLES / "scatter.cwl", "share") == "['v1.2'] Workflow"


def test_without_the_hook_cwltool_would_load_v1_0_too() -> None:
    # What share_core_types saves: the same load with cwltool's own constructor alone.
    assert _loaded_schemas(EXAMPLES / "scatter.cwl", "plain") == "['v1.0', 'v1.2'] Workflow"
