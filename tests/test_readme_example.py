"""Pin two forwarding rules of a Neutron virtual service on two Service Engines."""

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

SCENARIO = {
    "name": "neutron-2se", "cloud": "openstack-neutron", "seed": 1, "duration": 10.0,
    "networks": {"frontend": {"cidr": "10.10.0.0/24", "gateway": "10.10.0.1"},
                 "backend": {"cidr": "10.20.0.0/24"}},
    "service_engines": [{"name": "se-1", "host": "esx-1"}, {"name": "se-2", "host": "esx-2"}],
    "virtual_service": {"name": "vs-web", "vip": "10.10.0.100", "port": 80, "protocol": "tcp",
                        "placement": ["se-1", "se-2"]},
    "pool": {"servers": ["10.20.0.101:8080"], "health_monitor": {"type": "none"}},
    "traffic": {"clients": ["198.51.100.0/28"]},
}
VIP, CLIENT, TESTER = "10.10.0.100", "198.51.100.7", "02:aa:00:00:00:01"


def test_only_the_primary_answers_arp_for_the_vip(dataplane_net):
    net = dataplane_net(SCENARIO)
    net.expect("frontend", Ether(src=net.mac("se-1"), dst="ff:ff:ff:ff:ff:ff") /
               ARP(hwsrc=net.mac("se-1"), psrc=VIP, hwdst="00:00:00:00:00:00", pdst=VIP))  # gratuitous ARP
    net.send("frontend", Ether(src=TESTER, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=TESTER, psrc="10.10.0.50", pdst=VIP))
    net.expect("frontend", Ether(src=net.mac("se-1"), dst=TESTER) /
               ARP(op="is-at", hwsrc=net.mac("se-1"), psrc=VIP, hwdst=TESTER, pdst="10.10.0.50"))
    net.expect_no_other()  # in particular: no answer from se-2


def test_neutron_response_returns_through_the_primary(dataplane_net):
    net = dataplane_net(SCENARIO)
    syn = Ether(src=net.mac("gw"), dst=net.mac("se-1")) / IP(src=CLIENT, dst=VIP, ttl=63) / \
        TCP(sport=40002, dport=80, flags="S", seq=1000)
    net.send("gw.frontend", syn)
    synack = Ether(src=net.mac("se-1"), dst=net.mac("gw")) / IP(src=VIP, dst=CLIENT, flags="DF") / \
        TCP(sport=80, dport=40002, flags="SA", ack=1001, options=[("MSS", 1460)])
    net.expect("gw.frontend", synack, mask=["ip.id", "ip.ttl", "tcp.seq", "tcp.window"])
    assert net.owner_of(syn) == "se-2"  # served by the secondary, answered through the primary
