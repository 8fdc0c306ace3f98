"""cwltool loads one CWL schema per process, not two, and reuses loads across processes through
a disk cache (cwl_crunch.cwl.schemas)."""

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


# A fresh interpreter loading a workflow with the disk cache on: how many schemas schema-salad
# really had to load, and what the cached loads give.
CACHED_PROBE = textwrap.dedent("""
    import sys
    from cwltool import process
    from cwltool.context import LoadingContext
    from cwltool.load_tool import load_tool
    from cwltool.workflow import default_make_tool
    from schema_salad import schema as salad
    from cwl_crunch.cwl.schemas import cache_schema_loads

    real_loads = []
    original = process.load_schema
    process.load_schema = lambda name, cache=None: real_loads.append(name) or original(name, cache=cache)
    metaschema_builds = []
    build_metaschema = salad.get_metaschema
    salad.get_metaschema = lambda: metaschema_builds.append(1) or build_metaschema()
    cache_schema_loads()
    loading = LoadingContext()
    loading.construct_tool_object = default_make_tool
    tool = load_tool(sys.argv[1], loading)
    print(len(real_loads), len(metaschema_builds), type(tool).__name__, len(tool.steps))
""")


def _cached_load(document: Path, cache: Path) -> str:
    done = subprocess.run([sys.executable, "-c", CACHED_PROBE, str(document)], capture_output=True, text=True,
                          timeout=120, env={"CWL_CRUNCH_SCHEMA_CACHE": str(cache), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_schema_loads_are_cached_on_disk_across_processes(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _cached_load(EXAMPLES / "scatter.cwl", cache)
    loads, metaschema_builds, built = first.split(maxsplit=2)
    assert int(loads) >= 1 and metaschema_builds == "1"
    pickles = sorted(cache.glob("schema-*.pickle"))
    assert len(pickles) == int(loads)
    assert len(list(cache.glob("metaschema-*.pickle"))) == 1
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in cache.glob("*.pickle"))
    # The next process builds no schema and no metaschema itself, and the same workflow from the cached ones.
    assert _cached_load(EXAMPLES / "scatter.cwl", cache) == f"0 0 {built}"


def test_an_unreadable_cache_entry_is_loaded_anew_and_replaced(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _cached_load(EXAMPLES / "scatter.cwl", cache)
    for stored in cache.glob("*.pickle"):
        stored.write_bytes(b"not a pickle")
    assert _cached_load(EXAMPLES / "scatter.cwl", cache) == first
    assert _cached_load(EXAMPLES / "scatter.cwl", cache).startswith("0 0 ")


def test_without_a_writable_cache_directory_schemas_are_loaded_as_usual(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    first = _cached_load(EXAMPLES / "scatter.cwl", blocked / "cache")
    assert first == _cached_load(EXAMPLES / "scatter.cwl", blocked / "cache") and not first.startswith("0 ")


NAMES_PROBE = textwrap.dedent("""
    import sys
    from cwltool import process
    from cwltool.context import LoadingContext
    from cwltool.load_tool import load_tool
    from cwltool.workflow import default_make_tool
    from cwl_crunch.cwl.schemas import share_core_names, share_core_types

    builds = []
    original = process.make_avro_schema
    def counted(definitions, loader, vocab=None):
        builds.append(len(definitions))
        return original(definitions, loader, vocab)
    process.make_avro_schema = counted
    if sys.argv[2] == "share":
        share_core_names()

    tools = []
    def make_tool(document, loading):
        share_core_types()
        tools.append(default_make_tool(document, loading))
        return tools[-1]

    loading = LoadingContext()
    loading.construct_tool_object = make_tool
    load_tool(sys.argv[1], loading)
    tables = [tool.names.names for tool in tools]
    own = [sorted(n for n in table if "record_schema" in n) for table in tables]
    print(len(tools), len(builds), len({id(table) for table in tables}), own[0])
""")


def _names_built(document: Path, mode: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", NAMES_PROBE, str(document), mode], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split(maxsplit=3)


def test_the_core_types_avro_names_are_built_once_and_each_tool_gets_its_own_table() -> None:
    tools, builds, tables, first_own = _names_built(EXAMPLES / "wordcount.cwl", "share")
    assert int(tools) > 3 and int(tables) == int(tools)  # every constructor has a table of its own
    assert int(builds) == 1
    assert first_own.strip() == "['input_record_schema', 'outputs_record_schema']"  # and its records are in it


def test_without_it_cwltool_builds_them_for_every_tool() -> None:
    tools, builds, _, _ = _names_built(EXAMPLES / "wordcount.cwl", "plain")
    assert int(builds) >= int(tools) > 3  # the workflow's steps are tools too
