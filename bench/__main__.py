"""`python -m bench`: run the benchmark and print the table."""

from .run import main

raise SystemExit(main())
