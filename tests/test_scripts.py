"""The scripts in tools/ and benchmarks/ at least start: a moved import otherwise surfaces only on the day a
model is shipped or a table rerun (tools/ship_model.py once imported TTA_MODES from where it no longer was)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for folder in ("tools", "benchmarks") for p in (ROOT / folder).glob("*.py")
                 if p.name not in ("timing.py", "__init__.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_script_imports_and_answers_help(script):
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120,
                          cwd=script.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()
