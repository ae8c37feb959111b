"""
Frames as bytes: header layouts, checksums, building and rewriting frames,
the pcapng writer, the capture reader and header fields by name (masks).
"""
