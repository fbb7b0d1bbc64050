"""The base install is the client and the wire schemas only; the rest comes in extras, and a missing extra is
one line naming it (issue 14 item 5).

A fresh virtual environment per run would take minutes, so the light install is simulated instead: a subprocess
makes every installed package the base dependencies (``[project] dependencies`` in ``pyproject.toml``, with what
they require) do not bring unimportable (``sys.modules[name] = None``), then imports the client as a user would.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

from embedding_studio.extras import EXTRA_MODULES, extra_of, missing_extra

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: What the brief for item 5 names as never needed by the client; checked to be blocked, so the test is not vacuous.
HEAVY = ("torch", "sqlalchemy", "psycopg", "mlflow", "fastapi", "boto3", "google", "uvicorn", "procrastinate", "numpy")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements: list[str], extras: tuple[str, ...] = ()) -> set[str]:
    """The installed distributions ``requirements`` bring, transitively (markers evaluated for this interpreter)."""
    found: set[str] = set()
    pending = [(Requirement(text), extras) for text in requirements]
    while pending:
        requirement, requested = pending.pop()
        environments = [{**default_environment(), "extra": extra} for extra in (*requested, "")]
        if requirement.marker is not None and not any(requirement.marker.evaluate(env) for env in environments):
            continue
        name = _canonical(requirement.name)
        if name == "embedding-studio":  # a self-reference (all = [embedding-studio[server,...]])
            for extra in requirement.extras:
                pending += [(Requirement(text), ()) for text in PYPROJECT["project"]["optional-dependencies"][extra]]
            continue
        if name in found:
            continue
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional dependency that is not installed here cannot be imported anyway
        found.add(name)
        pending += [(Requirement(text), tuple(requirement.extras)) for text in distribution.requires or []]
    return found


def _modules_outside(distributions: set[str]) -> list[str]:
    """Top-level modules of installed distributions none of which is in ``distributions``."""
    outside = []
    for module, owners in importlib.metadata.packages_distributions().items():
        if module.isidentifier() and not any(_canonical(owner) in distributions for owner in owners):
            outside.append(module)
    return sorted(set(outside) - {"embedding_studio"})


def _run_light(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where only the base install's packages (and the stdlib) import."""
    blocked = _modules_outside(_closure(PYPROJECT["project"]["dependencies"]))
    assert set(HEAVY) <= set(blocked), f"not blocked, so not tested: {sorted(set(HEAVY) - set(blocked))}"
    prelude = textwrap.dedent(
        f"""
        import sys
        at_start = set(sys.modules)  # the interpreter's own start (site, .pth files), not the code under test
        for name in {blocked!r}:
            if name not in sys.modules:  # what the interpreter itself loaded at start (site, .pth files) stays
                sys.modules[name] = None
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_the_client_and_schemas_import_and_work_with_the_base_dependencies_only() -> None:
    result = _run_light(
        """
        import json
        import httpx
        from embedding_studio import schemas
        from embedding_studio.client import EmbeddingStudioClient, _loader_json

        # a client talks to a server (here a stand-in transport) and parses its answers with the schemas
        def answer(request):
            return httpx.Response(200, json={"blue_model_id": None, "previous_blue_model_id": None, "models": []})

        http = httpx.Client(base_url="http://server", transport=httpx.MockTransport(answer))
        with EmbeddingStudioClient("http://server", api_key="k", http_client=http) as client:
            assert client.list_models().models == []
        schemas.UpsertItem(item_id="a", fields={"title": "water"})
        schemas.SessionRecord(session_id="s", query="q", results=["a"], events=[{"event_id": "e", "item_id": "a"}])
        loader = _loader_json(schemas.LoaderSpec(name="jsonl_catalog", options={"path": "corpus.jsonl"}))
        assert loader["options"]["path"].startswith("/"), loader
        assert schemas.TaskStatus("refused").is_final

        loaded = {name for name, module in sys.modules.items() if module is not None and name not in at_start}
        third_party = sorted({name.split(".")[0] for name in loaded} - set(sys.stdlib_module_names))
        ours = sorted(name for name in loaded if name.startswith("embedding_studio"))
        print(json.dumps({"third_party": third_party, "ours": ours}))
        """
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    allowed_ours = ("embedding_studio.client", "embedding_studio.schemas", "embedding_studio.extras")
    assert [name for name in loaded["ours"] if name != "embedding_studio" and not name.startswith(allowed_ours)] == []
    base = _closure(PYPROJECT["project"]["dependencies"])
    owners = importlib.metadata.packages_distributions()
    foreign = [
        name
        for name in loaded["third_party"]
        if name in owners
        and name != "embedding_studio"
        and not any(_canonical(owner) in base for owner in owners[name])
    ]
    assert foreign == [], f"the client loaded packages the base install does not bring: {foreign}"


def test_every_module_the_extras_map_names_comes_with_that_extra() -> None:
    """``extras.EXTRA_MODULES`` (what the messages say) against ``pyproject.toml`` (what pip installs)."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    owners = importlib.metadata.packages_distributions()
    for extra, modules in EXTRA_MODULES.items():
        brought = _closure(optional[extra])
        for module in modules:
            top = module.split(".")[0]
            assert any(_canonical(owner) in brought for owner in owners.get(top, [])), (extra, module)
        # and every distribution the extra names directly has a module in the map, so its absence is explained
        for text in optional[extra]:
            name = _canonical(Requirement(text).name)
            tops = [module for module, dists in owners.items() if name in map(_canonical, dists)]
            if tops:  # installed here
                assert any(extra_of(top) == extra for top in tops), (extra, name, tops)
    assert set(optional["all"][0].split("[")[1].rstrip("]").split(",")) == set(EXTRA_MODULES)


def test_a_missing_module_is_explained_by_its_extra() -> None:
    error = ModuleNotFoundError("No module named 'boto3'", name="boto3")
    missing = missing_extra(error, for_what="loader 's3_text'")
    assert missing is not None and missing.extra == "s3"
    assert "loader 's3_text' needs the [s3] extra" in str(missing) and "pip install 'embedding-studio[s3]'" in str(
        missing
    )
    assert missing_extra(ModuleNotFoundError("No module named 'google.cloud.storage'", name="google.cloud.storage"))
    assert missing_extra(ModuleNotFoundError("x", name="sentence_transformers.models")).extra == "train"
    assert missing_extra(ModuleNotFoundError("x", name="no_such_thing")) is None  # not ours to explain: a bug
    wrapped = RuntimeError("failed")
    wrapped.__cause__ = ModuleNotFoundError("x", name="fastapi")
    assert missing_extra(wrapped).extra == "server"


def test_the_command_without_the_server_extra_says_which_extra_to_install() -> None:
    result = _run_light(
        """
        sys.argv = ["embedding-studio", "serve"]
        from embedding_studio.cli.launcher import main
        main()
        """
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error: embedding-studio serve needs the [server] extra" in result.stderr
    assert "pip install 'embedding-studio[server]'" in result.stderr


def test_a_cloud_loader_without_its_extra_is_refused_naming_it() -> None:
    code = """
        import sys
        sys.modules["boto3"] = None
        from embedding_studio.items.loader import LoaderError
        from embedding_studio.items.registry import loader_class
        try:
            loader_class("s3_text")
        except LoaderError as error:
            print(error)
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "loader 's3_text' needs the [s3] extra" in result.stdout
