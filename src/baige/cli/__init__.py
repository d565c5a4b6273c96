"""The ``baige`` command line."""
