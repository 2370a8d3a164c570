"""Import every subcommand module so each one registers itself on the group.

Add one line per new subcommand module here.
"""

from condukt_egress.cli import (
    events,  # noqa: F401  (registers `events`)
    explain,  # noqa: F401  (registers `explain`)
    render,  # noqa: F401  (registers `render`)
    render_guard,  # noqa: F401  (registers `render-guard`)
)
