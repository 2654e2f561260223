"""``python -m services.notifier``: the same as ``veille run notifier``."""

from services.notifier.app import main

main()
