"""The ``sugar-xero`` command line: what it accepts."""

from __future__ import annotations

import pytest

from sugar_xero.cli import PASS_THROUGH, build_parser, main


@pytest.mark.parametrize("command", sorted(PASS_THROUGH))
def test_every_contract_command_is_there_with_its_own_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_local_takes_ports_with_0_for_a_free_one():
    args = build_parser().parse_args(["local", "--port", "0", "--xero-port", "5101", "--sugar-port", "0"])
    assert (args.port, args.xero_port, args.sugar_port) == (0, 5101, 0)
    defaults = build_parser().parse_args(["local"])
    assert (defaults.port, defaults.xero_port, defaults.sugar_port) == (3000, 5001, 5002)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["local", "--port", "70000"])


def test_demo_without_a_running_stack_explains_and_exits_2(tmp_path, capsys):
    assert main(["demo", "--state-file", str(tmp_path / "absent.json")]) == 2
    assert "sugar-xero local" in capsys.readouterr().err


def test_unknown_options_are_refused_for_real_commands():
    with pytest.raises(SystemExit):
        main(["demo", "--bogus"])
