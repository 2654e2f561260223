"""``python -m veille``: the ``veille`` command."""

from veille_cli import main

main()
