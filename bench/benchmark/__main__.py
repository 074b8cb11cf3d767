"""``python -m bench.benchmark``."""
from bench.benchmark.cli import main

raise SystemExit(main())
