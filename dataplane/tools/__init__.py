"""
Tools over a run's outputs: the HTML report with plots, and the Wireshark profile.
"""
