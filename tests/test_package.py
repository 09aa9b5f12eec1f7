"""Package metadata: the version, the changelog and the typing marker agree."""

import re
from pathlib import Path

import kerasrecon

ROOT = Path(__file__).resolve().parents[1]


def test_changelog_names_the_current_version_and_the_package_is_typed():
    newest = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M).group(1)
    assert newest == kerasrecon.__version__
    assert (ROOT / "kerasrecon" / "py.typed").is_file()
