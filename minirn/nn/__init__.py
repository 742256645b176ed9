"""Neural-network building blocks (``minirn.nn``): functional ops now, layers soon."""
from minirn.nn import functional

__all__ = ["functional"]
