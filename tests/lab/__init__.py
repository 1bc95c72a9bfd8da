"""Packet-test lab: network namespaces shaped like a KVM host, frames built with struct, and a
table-driven battery that reports where each frame arrived.

Import as ``lab`` with tests/ on sys.path (pytest does this through tests/conftest.py)."""

from .battery import CASE_NAMES, CASES, Case, cases_by_name, format_table, run_battery
from .netns import Guest, Lab, LabError, cleanup_prefix, in_netns, list_namespaces, \
    packet_socket, tcp_listener, udp_socket

__all__ = [
    "CASES", "CASE_NAMES", "Case", "Guest", "Lab", "LabError", "cases_by_name", "cleanup_prefix",
    "format_table", "in_netns", "list_namespaces", "packet_socket", "run_battery",
    "tcp_listener", "udp_socket",
]
