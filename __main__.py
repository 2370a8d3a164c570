"""The per-session stack: ``pulumi config set sessionId <id> && pulumi up``.

All logic lives in :func:`condukt_egress.program.session_program`, which the
Automation API runs too, so both create the same stack. A config error ends
the run as its one error line (see :mod:`condukt_egress._bail`).
"""

from condukt_egress._bail import stop
from condukt_egress.program import StackConfigError, StackPolicyError, session_program

try:
    session_program()
except (StackConfigError, StackPolicyError) as error:
    stop(error)
