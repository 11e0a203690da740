"""``python -m synthstream`` runs the CLI."""

from synthstream.cli import main

main()
