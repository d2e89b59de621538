"""``scripts/serve``'s banner shows the address the server will really use.

The script runs in a copy of the tree whose ``.venv`` holds a stand-in ``notifier``: it
answers the first-run steps and records the ``serve`` arguments, so no server starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from notifier.config import PROJECT_ROOT

STAND_IN = """#!{python}
import json, sys
args = sys.argv[1:]
if args[:2] == ["brands", "--json"]:
    print("[]")
elif args[:2] == ["token", "create"]:
    print("nt_stand_in")
elif args[:1] == ["serve"]:
    print(json.dumps(args[1:]))
else:
    sys.exit(f"unexpected: {{args}}")
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "scripts").mkdir(parents=True)
    serve = root / "scripts" / "serve"
    serve.write_text((PROJECT_ROOT / "scripts" / "serve").read_text())
    serve.chmod(0o755)
    setup = root / "scripts" / "setup.sh"
    setup.write_text("#!/bin/sh\nexit 0\n")
    setup.chmod(0o755)
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    notifier = bin_dir / "notifier"
    notifier.write_text(STAND_IN.format(python=sys.executable))
    notifier.chmod(0o755)
    return root


@pytest.mark.parametrize(
    ("args", "base"),
    [
        ([], "http://127.0.0.1:8025"),
        (["--port=9000"], "http://127.0.0.1:9000"),
        (["--port", "9001"], "http://127.0.0.1:9001"),
        (["--host", "0.0.0.0", "--port=9002"], "http://127.0.0.1:9002"),
        (["--host=192.0.2.7", "--port", "9003", "--no-worker"], "http://192.0.2.7:9003"),
        (["--host", "::1"], "http://[::1]:8025"),
    ],
)
def test_banner_shows_the_port_in_use(tree: Path, args: list[str], base: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    proc = subprocess.run(
        [str(tree / "scripts" / "serve"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == args  # every argument reached `notifier serve`
    assert f"Preview:  {base}/preview " in proc.stderr
    assert f"API docs: {base}/docs" in proc.stderr
    assert proc.stderr.count("http://") == 3
    assert (tree / "var" / "dev-admin-token").read_text() == "nt_stand_in\n"
    assert "sign in with the token in var/dev-admin-token" in proc.stderr
