"""The per-session stack: ``pulumi config set sessionId <id> && pulumi up``.

All logic lives in :func:`condukt_egress.program.session_program`, which the
Automation API runs too, so both create the same stack.
"""

from condukt_egress.program import session_program

session_program()
