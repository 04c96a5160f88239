"""The ``wxb`` command as the tests run it: ``wxb_cli`` as a user does, ``python -m wxb.cli`` in a
process of its own (the real entry point: exit codes, one-line errors, no traceback), and
``run_wxb`` in the test's own process."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest


def wxb_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """Run ``wxb ARGS...`` (CI=true: no progress bars) and return its exit code and output."""
    return subprocess.run([sys.executable, "-m", "wxb.cli", *args], capture_output=True,
                          text=True, input=stdin, env={**os.environ, "CI": "true"}, timeout=300)


def run_wxb(capsys: Any, *args: Any) -> tuple[int, str, str]:
    """Run ``wxb ARGS`` in this process (quicker: torch is imported already); return (exit
    code, stdout, stderr)."""
    from wxb.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err
