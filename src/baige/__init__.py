"""Baige: an open AI compute platform that pools mixed accelerators for training and
inference. See ``ARCHITECTURE.md`` for the layers; ``baige.sched`` is the heart."""

__version__ = "0.1.0"
