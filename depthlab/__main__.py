"""``python -m depthlab``: the ``depthlab`` command."""

from depthlab.cli.main import main

main()
