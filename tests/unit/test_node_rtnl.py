"""The pod sandbox's route netlink requests (kubeling.node.rtnl): decoded by pyroute2 as an
independent reader, and the acknowledgement handling against a scripted socket (no real
netlink traffic: unit tests never touch the host's links)."""

from __future__ import annotations

import errno
import struct
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from kubeling.node import rtnl


def decode(cls: Any, r: rtnl.Request) -> Any:
    msg = cls(struct.pack("=IHHII", 16 + len(r.body), r.type, r.flags, 1, 0) + r.body)
    msg.decode()
    return msg


def test_veth_pair() -> None:
    r = rtnl.veth_pair("klv0a1b2c3d", 7, "eth0", 5, 2)
    assert r.type == rtnl.RTM_NEWLINK and r.flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    m = decode(ifinfmsg, r)
    assert (m.get_attr("IFLA_IFNAME"), m.get_attr("IFLA_MASTER")) == ("klv0a1b2c3d", 7)
    assert m["flags"] & rtnl.IFF_UP and m["change"] & rtnl.IFF_UP
    info = m.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "veth"
    peer = info.get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert (peer["index"], peer.get_attr("IFLA_IFNAME"), peer.get_attr("IFLA_NET_NS_FD")) == (2, "eth0", 5)


def test_hairpin() -> None:
    m = decode(ifinfmsg, rtnl.hairpin("klv0a1b2c3d"))
    assert m["index"] == 0 and m.get_attr("IFLA_IFNAME") == "klv0a1b2c3d"
    info = m.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_SLAVE_KIND") == "bridge"
    assert info.get_attr("IFLA_INFO_SLAVE_DATA").get_attr("IFLA_BRPORT_MODE") == 1


def test_link_address_route() -> None:
    up = decode(ifinfmsg, rtnl.link_up(2))
    assert (up["index"], up["flags"], up["change"]) == (2, 1, 1)
    a = decode(ifaddrmsg, rtnl.address(2, "10.244.0.7", 24))
    assert (a["index"], a["prefixlen"], a.get_attr("IFA_LOCAL"), a.get_attr("IFA_ADDRESS")) == \
        (2, 24, "10.244.0.7", "10.244.0.7")
    rt = decode(rtmsg, rtnl.default_route("10.244.0.1"))
    assert (rt["table"], rt["dst_len"], rt["type"], rt.get_attr("RTA_GATEWAY")) == (254, 0, 1, "10.244.0.1")


class ScriptedSocket:
    """Acknowledges every request in the datagram sent, with the given error codes in order."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.sent: list[bytes] = []
        self.replies: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        offset, acks = 0, []
        while offset < len(data):
            length, _, flags, seq, _ = struct.unpack_from("=IHHII", data, offset)
            assert flags & rtnl.NLM_F_ACK and flags & rtnl.NLM_F_REQUEST
            code = self.codes.pop(0)
            acks.append(struct.pack("=IHHII", 36, rtnl.NLMSG_ERROR, 0, seq, 0) + struct.pack("=i", -code)
                        + data[offset:offset + 16])
            offset += length
        # the kernel may split the acknowledgements over several reads
        self.replies = [b"".join(acks[:1]), b"".join(acks[1:])]
        return len(data)

    def recv(self, size: int) -> bytes:
        return self.replies.pop(0)

    def close(self) -> None:
        pass


def scripted(codes: list[int]) -> tuple[rtnl.RouteSocket, ScriptedSocket]:
    sock = rtnl.RouteSocket.__new__(rtnl.RouteSocket)
    fake = ScriptedSocket(codes)
    sock._sock, sock._seq = fake, 0  # type: ignore[assignment]
    return sock, fake


def test_requests_go_in_one_datagram_and_every_ack_is_awaited() -> None:
    sock, fake = scripted([0, 0, 0])
    sock.request(rtnl.link_up(1), rtnl.address(2, "10.244.0.7", 24), rtnl.link_up(2))
    assert len(fake.sent) == 1 and fake.replies == []


def test_the_first_failure_names_its_request() -> None:
    sock, _ = scripted([0, errno.EEXIST, errno.ENODEV])
    with pytest.raises(OSError, match=r"^\[Errno 17\] address 10.244.0.7/24: File exists") as e:
        sock.request(rtnl.link_up(1), rtnl.address(2, "10.244.0.7", 24), rtnl.link_up(2))
    assert e.value.errno == errno.EEXIST
