"""Which network interface this machine reaches the main node by: gloo's choice made explicit.

gloo (every collective on CPUs, and the CPU-side groups some libraries open beside NCCL) binds to
the address this machine's hostname resolves to, and falls back to loopback when that address is
not one of its own. Debian maps the hostname to 127.0.1.1, containers and network namespaces often
to 127.0.0.1: on several machines every rank then tells the others to connect to 127.0.0.1, and the
job fails at its first collective after the timeout ("Connection refused, remote=[127.0.0.1]").
Naming the interface that routes to the main address (GLOO_SOCKET_IFNAME) avoids that; a value
the user set is kept. NCCL picks its interface by itself (NCCL_SOCKET_IFNAME overrides it).
"""

from __future__ import annotations

import fcntl
import socket
import struct

GLOO_INTERFACE_VARIABLE = "GLOO_SOCKET_IFNAME"
_SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address


def _ipv4_of(interface: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", interface.encode()[:15]))
        except OSError:  # no IPv4 address on it
            return None
    return socket.inet_ntoa(packed[20:24])


def local_address_towards(host: str) -> str | None:
    """This machine's address that packets to `host` leave from (None if `host` does not resolve
    or no route leads there). A UDP connect sends nothing: it only asks the routing table."""
    try:
        address = socket.gethostbyname(host)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((address, 9))
            return sock.getsockname()[0]
    except OSError:
        return None


def interface_towards(host: str) -> tuple[str, str] | None:
    """(interface name, its address) by which this machine reaches `host`, or None if unknown."""
    local = local_address_towards(host)
    if local is None:
        return None
    try:
        interfaces = socket.if_nameindex()
    except OSError:
        return None
    for _, name in interfaces:
        if _ipv4_of(name) == local:
            return name, local
    return None
