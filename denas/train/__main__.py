"""`python -m denas.train ...` is `denas train ...`."""

from denas.train.command import main

raise SystemExit(main())
