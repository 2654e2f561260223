"""``python -m services.classifier``: the same as ``veille run classifier``."""

from veille.cli import main

main(["run", "classifier"])
