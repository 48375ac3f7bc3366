"""`python -m soak.mock` runs the mock provider (same flags as `soak mock`)."""

from .cli import main

raise SystemExit(main())
