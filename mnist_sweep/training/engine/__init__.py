"""The stacked engine: a group of dense trials trained as one compiled model (see `trainer`)."""

from .trainer import StackEngine, supported

__all__ = ["StackEngine", "supported"]
