"""Execution engines behind one small protocol (launch, stop, observe)."""

from baige.backends.base import Backend, ReplicaLaunch, ReplicaObservation, ReplicaState

__all__ = ["Backend", "ReplicaLaunch", "ReplicaObservation", "ReplicaState"]
