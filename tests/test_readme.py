"""README.md stays true: every config key, preset, command and option is documented there."""

from pathlib import Path

import pytest
import typer.main

from cli import app
from enas.config import describe_keys, preset_names

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_config_key_is_in_the_readme():
    # search.* and retrain.* share one table of TrainConfig keys, named without their section
    missing = [key for key, _, _ in describe_keys()
               if f"`{key.split('.', 1)[1] if key.startswith(('search.', 'retrain.')) else key}`" not in README]
    assert not missing, f"README.md does not document: {missing}"


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_is_in_the_readme(name):
    assert f"`{name}`" in README


def test_every_command_and_option_is_in_the_readme():
    command = typer.main.get_command(app)
    for name, sub in command.commands.items():
        assert f"`enas {name}" in README, name
        for param in sub.params:
            for flag in param.opts:
                if flag.startswith("-") and flag != "--help":
                    assert flag in README, f"enas {name} {flag}"
