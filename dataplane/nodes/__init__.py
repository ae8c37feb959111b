"""
The hosts on the segments: a router, clients, pool servers and Service Engines,
with the runtime context they share (``context``).
"""
