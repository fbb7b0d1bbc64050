"""The generated configuration reference is the one committed (CI fails when a setting changes without it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "generate_config_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + "\nrun: .venv/bin/python scripts/generate_config_reference.py"


def test_reference_names_every_setting_and_its_environment_variable() -> None:
    from embedding_studio.config import Settings

    text = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"| `{name}` |" in text
    assert "`DATABASE_URL`" in text and "`EMBEDDING_STUDIO_DEVICE`" in text


def test_readme_points_at_what_exists() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for needed in (
        "make demo",
        "make test",
        "DATABASE_URL",
        "MLFLOW_TRACKING_URI",
        "--queues fine_tuning",
        "docs/configuration.md",
        "docs/plugins.md",
        "embedding_studio.plugins",
    ):
        assert needed in readme, needed
    for document in ("docs/configuration.md", "docs/plugins.md", "docs/internals.md"):
        assert (REPO_ROOT / document).is_file(), document
