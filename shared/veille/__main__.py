"""``python -m veille``: the ``veille`` command."""

from veille.cli import main

main()
