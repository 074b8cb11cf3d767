"""Which arms run beside a method: ``applicable_arms`` (the registry of controls is ``bench.controls``)."""
from bench.controls import applicable_arms

__all__ = ["applicable_arms"]
