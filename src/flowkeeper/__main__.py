"""Run the flowkeeper command line as `python -m flowkeeper`."""

from flowkeeper.cli.main import main

raise SystemExit(main())
