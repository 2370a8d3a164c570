"""``python -m condukt_egress``: the same as the ``condukt-egress`` command."""

from condukt_egress.cli import main

if __name__ == "__main__":
    main()
