"""DeNAS: hardware-aware, train-free neural architecture search."""

__version__ = "0.1.0"
