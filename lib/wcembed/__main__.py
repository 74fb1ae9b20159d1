"""``python -m wcembed``: see :mod:`wcembed.apps.cli`."""

from wcembed.apps.cli import main

raise SystemExit(main())
