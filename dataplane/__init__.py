"""
Emulate Avi / NSX ALB virtual-service scale-out at the packet level.

Importing the package is cheap: the native module is loaded only by
``dataplane.flowhash``, the one facade over the C library.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
