"""``python -m notifier.worker``: one delivery worker."""

from .loop import main

raise SystemExit(main())
