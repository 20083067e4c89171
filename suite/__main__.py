"""``python -m twsbench``: the ``twsbench`` command."""

from twsbench.cli import main

raise SystemExit(main())
