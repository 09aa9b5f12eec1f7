"""Every Python block of the README and of docs/ runs as pasted (in a fresh process, from the
repository root): a guide whose examples fail is worse than none."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [
    pytest.param(block, id=f"{doc.name}:{n}")
    for doc in DOCS
    for n, block in enumerate(re.findall(r"^```python\n(.*?)^```", doc.read_text(encoding="utf-8"), re.M | re.S))
]


def test_there_are_python_blocks():
    assert BLOCKS


@pytest.mark.slow
@pytest.mark.parametrize("code", BLOCKS)
def test_python_block_runs(code, tmp_path):
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
