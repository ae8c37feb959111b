"""
The control plane: which SEs serve the virtual service, and every change to that set.
"""
