"""Library errors name Python arguments and config fields; the CLI names its options for the same errors."""

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kerasrecon.config import DataConfig, TrainConfig
from kerasrecon.errors import ConfigError, arg, argument_names
from kerasrecon_cli.main import ARGUMENT_OPTIONS, cli

ROOT = Path(__file__).resolve().parents[1]


def _cli_options(group: click.Group) -> set[str]:
    found = set()
    for command in group.commands.values():
        if isinstance(command, click.Group):
            found |= _cli_options(command)
        for param in command.params:
            found |= {o.split("=")[0] for o in getattr(param, "opts", []) if o.startswith("--")}
            found |= {o for o in getattr(param, "secondary_opts", []) if o.startswith("--")}
    return found


def test_config_error_names_the_field_in_python_and_the_option_in_the_cli(tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.patch_size must be >= 8\. Received: 4$"):
        TrainConfig(data=DataConfig(patch_size=4))
    with argument_names(ARGUMENT_OPTIONS), pytest.raises(ConfigError, match=r"^--patch-size must be >= 8"):
        TrainConfig(data=DataConfig(patch_size=4))
    assert arg("data.patch_size") == "data.patch_size"  # the block restored the Python spelling
    result = CliRunner().invoke(cli, ["fit", "--data", "demo", "--out", str(tmp_path / "r"), "--patch-size", "4"])
    assert result.exit_code == 2
    assert "--patch-size must be >= 8" in result.output and "data.patch_size" not in result.output


def test_every_named_argument_has_a_real_cli_option():
    # Each arg("...") the library uses is mapped, and each mapped option exists on some command.
    used = set()
    for path in (ROOT / "kerasrecon").rglob("*.py"):
        used |= set(re.findall(r"""\barg\(["']([^"']+)["']\)""", path.read_text()))
    assert used, "no arg() calls found"
    assert used - set(ARGUMENT_OPTIONS) == set()
    options = _cli_options(cli)
    assert {o for o in ARGUMENT_OPTIONS.values()} - options == set()


def test_nested_argument_names_restore_the_outer_spelling():
    with argument_names({"x": "--x"}):
        with argument_names({"y": "--y"}):
            assert (arg("x"), arg("y")) == ("--x", "--y")
        assert (arg("x"), arg("y")) == ("--x", "y")
    assert arg("x") == "x"
