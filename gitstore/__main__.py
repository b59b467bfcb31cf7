"""``python -m gitstore``: the command-line interface."""

from gitstore_cli.main import main

main()
