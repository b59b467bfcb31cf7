"""``python -m gitstore``: the command-line interface."""

from gitstore_cli.start import main

main()
