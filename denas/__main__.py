from denas.cli import main

raise SystemExit(main())
