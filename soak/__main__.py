"""`python -m soak` runs the CLI."""

from soak.cli import main

raise SystemExit(main())
