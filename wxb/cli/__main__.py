"""``python -m wxb.cli`` runs the `wxb` command."""

from wxb.cli import main

main()
