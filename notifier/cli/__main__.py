"""``python -m notifier.cli``: the ops CLI."""

from . import main

main()
