"""The engine-like monitor, now :class:`condukt_egress.testing.EngineMonitor`."""

from condukt_egress.testing import EngineMonitor

__all__ = ["EngineMonitor"]
