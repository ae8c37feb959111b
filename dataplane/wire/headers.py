"""
Named offsets and constants of the headers the emulator reads and writes.

Every place that reads a header field out of a frame's bytes names it from
here, so the layout is written down once.  Offsets assume an untagged
Ethernet II header (14 bytes); IPv4 offsets below are those of the fixed
20-byte header, and the transport header starts at ``IP + ihl`` where
``ihl`` comes from the IHL field (options are tolerated).
"""

from __future__ import annotations

# -- Ethernet --------------------------------------------------------------------
ETH_LEN = 14
ETH_DST = slice(0, 6)
ETH_SRC = slice(6, 12)
ETH_TYPE = slice(12, 14)
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_IPV4_BYTES = b"\x08\x00"
ETHERTYPE_ARP_BYTES = b"\x08\x06"
ETHERTYPE_IPV6_BYTES = b"\x86\xdd"
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6

# -- IPv4 (offsets from the start of the frame) ------------------------------------
IP = ETH_LEN
IP_VERSION_IHL = IP
IP_TOTAL_LENGTH = IP + 2
IP_FLAGS_FRAGMENT = IP + 6
IP_TTL = IP + 8
IP_PROTO = IP + 9
IP_CHECKSUM = IP + 10
IP_SRC = slice(IP + 12, IP + 16)
IP_DST = slice(IP + 16, IP + 20)
IP_ADDRESSES = slice(IP + 12, IP + 20)
IPV4_MIN_HEADER = 20
IPV4_DONT_FRAGMENT = 0x4000
IPV4_FRAGMENT_BITS = 0x3FFF  # more-fragments flag and fragment offset
# The same fields counted from the start of a bare IPv4 packet (a recorded one, before it gets an Ethernet header).
IPV4_PROTO = 9
IPV4_CHECKSUM = slice(10, 12)
IPV4_SRC = slice(12, 16)
IPV4_DST = slice(16, 20)
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

# -- IPv6 (RFC 8200; offsets from the start of the frame) ----------------------------
IPV6 = ETH_LEN
IPV6_HEADER = 40
IPV6_PAYLOAD_LENGTH = IPV6 + 4
IPV6_NEXT_HEADER = IPV6 + 6
IPV6_HOP_LIMIT = IPV6 + 7
IPV6_SRC = slice(IPV6 + 8, IPV6 + 24)
IPV6_DST = slice(IPV6 + 24, IPV6 + 40)
IPV6_ADDRESSES = slice(IPV6 + 8, IPV6 + 40)
IPV6_L4 = IPV6 + IPV6_HEADER  # the transport header of a frame without extension headers
# Extension headers the parser walks (RFC 8200 section 4), and "nothing follows".
EXT_HOP_BY_HOP = 0
EXT_ROUTING = 43
EXT_FRAGMENT = 44
EXT_DESTINATION = 60
NO_NEXT_HEADER = 59
IPV6_FRAGMENT_HEADER = 8
IPV6_FRAGMENT_OFFSET_MASK = 0xFFF8  # the fragment offset, in 8-byte units, in the top 13 bits
IPV6_MORE_FRAGMENTS = 0x0001

# -- TCP and UDP (offsets from the start of the transport header) -----------------
L4_PORTS = slice(0, 4)
TCP_SEQ = 4
TCP_ACK = 8
TCP_DATA_OFFSET = 12
TCP_FLAGS = 13
TCP_WINDOW = 14
TCP_CHECKSUM = 16
TCP_MIN_HEADER = 20
UDP_LENGTH = 4
UDP_CHECKSUM = 6
UDP_HEADER = 8
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
TCP_MSS = 1460
TCP_MSS6 = 1440  # a 1500-byte MTU less 40 bytes of IPv6 and 20 of TCP

# -- ARP (offsets from the start of the frame) -------------------------------------
ARP_SENDER_IP = slice(ETH_LEN + 14, ETH_LEN + 18)

# -- VXLAN (RFC 7348) -------------------------------------------------------------
VXLAN_HEADER = 8
VXLAN_FLAGS_VNI_VALID = 0x08
