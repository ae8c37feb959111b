"""
Run the command-line interface: ``python -m dataplane``.
"""

from dataplane.cli import main

raise SystemExit(main())
