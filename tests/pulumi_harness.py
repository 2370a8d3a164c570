"""The tests' names for the harness now in :mod:`condukt_egress.testing` (one copy, public).

``run`` here is :func:`condukt_egress.testing.record`: every knob, and the
plain recording monitor unless a test asks for :class:`EngineMonitor`.
"""

from condukt_egress.testing import EngineMocks as SessionMocks
from condukt_egress.testing import Recorder, RecordingMonitor, unwrap
from condukt_egress.testing import Resource as Registration
from condukt_egress.testing import record as run

__all__ = ["Recorder", "RecordingMonitor", "Registration", "SessionMocks", "run", "unwrap"]
