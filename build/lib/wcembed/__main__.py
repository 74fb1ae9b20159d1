"""``python -m wcembed``: see :mod:`wcembed.cli`."""

from wcembed.cli import main

raise SystemExit(main())
