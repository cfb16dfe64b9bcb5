"""`import textlens` stays light: no CLI, server, report engine or optional heavy packages."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_pull_cli_server_or_optional_packages() -> None:
    code = (
        "import sys, textlens\n"
        "bad = [m for m in ('textlens.cli', 'textlens.server', 'jinja2', 'fastapi', 'uvicorn',"
        " 'lime', 'shap', 'captum', 'ray', 'matplotlib', 'transformers')"
        " if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_public_names_sorted_and_present() -> None:
    import textlens

    assert list(textlens.__all__) == sorted(textlens.__all__)
    for name in textlens.__all__:
        assert hasattr(textlens, name)
