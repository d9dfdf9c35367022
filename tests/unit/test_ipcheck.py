"""IP allow lists with Traefik's checker semantics: entries, families, IPv4-mapped IPv6, and
Go's host split of the addresses an allow list is asked about."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.addresses import host_port
from switchyard.ipcheck import IPChecker, split_host


def allows(entries: list[str], peer: str) -> bool:
    return IPChecker(entries).contains(peer)


# --- entries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        "10.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "::1",
        "::",
        "2001:DB8::1",
        "1:2:3:4:5:6:7:8",
        "::ffff:10.0.0.1",
        "::1.2.3.4",
        "10.0.0.0/8",
        "10.1.2.3/8",
        "10.0.0.0/08",  # Go's prefix parser takes leading zeros
        "0.0.0.0/0",
        "10.0.0.1/32",
        "2001:db8::/32",
        "::/0",
        "::/128",
        "::ffff:10.0.0.0/104",
    ],
)
def test_valid_entries_are_accepted(entry: str) -> None:
    assert IPChecker([entry]).entries == (entry,)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("foo", "not an IP address or a CIDR"),
        ("", "not an IP address or a CIDR"),
        ("010.0.0.1", "leading zeros"),
        ("10.0.0.01/8", "leading zeros"),
        ("10.0.0", "not an IP address"),
        ("256.0.0.1", "not an IP address"),
        ("fe80::1%eth0", "zones"),
        ("fe80::%eth0/64", "zones"),
        ("10.0.0.0/33", "prefix length 33 is out of range for IPv4 (0-32)"),
        ("::/129", "prefix length 129 is out of range for IPv6 (0-128)"),
        ("::ffff:10.0.0.0/129", "out of range for IPv6"),
        ("10.0.0.0/" + "0" * 50 + "33", "out of range"),
        ("10.0.0.0/" + "9" * 5000, "out of range"),
        ("10.0.0.0/", "is not a decimal number"),
        ("10.0.0.0/-1", "is not a decimal number"),
        ("10.0.0.0/+8", "is not a decimal number"),
        ("10.0.0.0/ 8", "is not a decimal number"),
        ("10.0.0.0/255.0.0.0", "is not a decimal number"),
        ("10.0.0.0/8/8", "is not a decimal number"),
        (" 10.0.0.1", "not an IP address"),
        ("10.0.0.1 ", "not an IP address"),
        ("10.0.0.0 /8", "not an IP address"),
        ("[::1]", "not an IP address"),
        ("1::2:3:4:5:6:7:8", "not an IP address"),
    ],
)
def test_invalid_entries_are_refused_naming_the_entry(entry: str, reason: str) -> None:
    with pytest.raises(ValueError, match="invalid IP or CIDR") as caught:
        IPChecker([entry])
    message = str(caught.value)
    assert message.startswith(f'invalid IP or CIDR "{entry}": ')
    assert reason in message
    assert "<nil>" not in message


def test_the_first_bad_entry_of_a_list_is_named() -> None:
    with pytest.raises(ValueError, match='"bad"'):
        IPChecker(["10.0.0.1", "bad", "worse"])


def test_empty_list_is_refused() -> None:
    with pytest.raises(ValueError, match="no trusted IPs provided"):
        IPChecker([])


def test_a_single_string_is_not_mistaken_for_a_list() -> None:
    with pytest.raises(TypeError):
        IPChecker("10.0.0.1")


# --- matching -----------------------------------------------------------------------------


def test_single_ip_matches_only_itself() -> None:
    assert allows(["10.0.0.1"], "10.0.0.1")
    assert not allows(["10.0.0.1"], "10.0.0.2")


def test_network_host_bits_are_ignored() -> None:
    assert allows(["10.1.2.3/8"], "10.250.0.1")
    assert not allows(["10.1.2.3/8"], "11.0.0.1")


def test_ipv4_and_its_mapped_form_are_the_same_address() -> None:
    assert allows(["10.0.0.1"], "::ffff:10.0.0.1")
    assert allows(["::ffff:10.0.0.1"], "10.0.0.1")
    assert allows(["10.0.0.0/8"], "::ffff:10.9.9.9")
    assert allows(["10.0.0.0/8"], "0:0:0:0:0:FFFF:10.9.9.9")


def test_mapped_cidr_is_an_ipv4_network() -> None:
    assert allows(["::ffff:10.0.0.0/104"], "10.1.1.1")  # 104 - 96 = /8
    assert not allows(["::ffff:10.0.0.0/104"], "11.1.1.1")


def test_mapped_block_contains_every_ipv4() -> None:
    checker = IPChecker(["::ffff:0:0/96"])
    assert checker.contains("1.2.3.4")
    assert checker.contains("255.255.255.255")
    assert not checker.contains("2001:db8::1")


def test_all_ipv6_does_not_contain_ipv4() -> None:
    checker = IPChecker(["::/0"])
    assert checker.contains("2001:db8::1")
    assert checker.contains("::1")
    assert not checker.contains("10.0.0.1")
    assert not checker.contains("::ffff:10.0.0.1")


def test_all_ipv4_does_not_contain_native_ipv6() -> None:
    checker = IPChecker(["0.0.0.0/0"])
    assert checker.contains("192.0.2.1")
    assert checker.contains("::ffff:192.0.2.1")
    assert not checker.contains("2001:db8::1")
    assert not checker.contains("::1.2.3.4")  # IPv4-compatible is plain IPv6


def test_short_prefix_on_a_mapped_address_is_a_pure_ipv6_network() -> None:
    checker = IPChecker(["::ffff:10.0.0.1/64"])  # masks to ::/64
    assert checker.contains("::1")
    assert not checker.contains("10.0.0.1")


def test_ipv6_networks_match_ipv6_peers() -> None:
    assert allows(["2001:db8::/32"], "2001:db8:ffff::1")
    assert not allows(["2001:db8::/32"], "2001:db9::1")


def test_peer_zone_is_ignored() -> None:
    assert allows(["fe80::1"], "fe80::1%eth0")
    assert allows(["fe80::/10"], "fe80::abcd%1")


@pytest.mark.parametrize(
    "peer",
    [
        "",
        "garbage",
        "10.0.0",
        "010.0.0.1",
        "10.0.0.1:80",
        "[::1]",
        " 10.0.0.1",
        "10.0.0.1\n",
        "10.0.0.1%eth0",
        "fe80::1%",
        "::ffff:010.0.0.1",
        "10.0.0.1\x00",
        "10.0.0.\udc80",
        "١٠.0.0.1",
    ],
)
def test_unparsable_peers_are_not_contained(peer: str) -> None:
    assert not IPChecker(["0.0.0.0/0", "::/0"]).contains(peer)


def test_many_entries_of_mixed_kinds() -> None:
    checker = IPChecker(["10.0.0.1", "192.168.0.0/16", "2001:db8::/32", "::1", "172.16.0.0/12"])
    for peer in ("10.0.0.1", "192.168.9.9", "2001:db8::5", "::1", "172.31.255.255"):
        assert checker.contains(peer), peer
    for peer in ("10.0.0.2", "192.169.0.1", "2001:db9::", "::2", "172.32.0.0"):
        assert not checker.contains(peer), peer


# --- properties ---------------------------------------------------------------------------

v4_ints = st.integers(0, 2**32 - 1)
v6_ints = st.integers(0, 2**128 - 1)


@settings(max_examples=300, deadline=None)
@given(v4_ints, st.integers(0, 32), v4_ints)
def test_ipv4_networks_agree_with_ipaddress(base: int, prefix: int, peer: int) -> None:
    network = ipaddress.IPv4Network((base, prefix), strict=False)
    entry = f"{ipaddress.IPv4Address(base)}/{prefix}"
    address = ipaddress.IPv4Address(peer)
    assert IPChecker([entry]).contains(str(address)) is (address in network)
    # Nearby addresses too, so that both edges of the network are exercised.
    for edge in (network.network_address, network.broadcast_address):
        for delta in (-1, 0, 1):
            if 0 <= int(edge) + delta < 2**32:
                nearby = ipaddress.IPv4Address(int(edge) + delta)
                assert IPChecker([entry]).contains(str(nearby)) is (nearby in network)


@settings(max_examples=200, deadline=None)
@given(v6_ints, st.integers(0, 128), v6_ints)
def test_native_ipv6_networks_agree_with_ipaddress(base: int, prefix: int, peer: int) -> None:
    network = ipaddress.IPv6Network((base, prefix), strict=False)
    if network.network_address.ipv4_mapped is not None:
        return  # mapped networks are IPv4 networks, covered separately
    address = ipaddress.IPv6Address(peer)
    if address.ipv4_mapped is not None:
        return
    entry = f"{ipaddress.IPv6Address(base)}/{prefix}"
    assert IPChecker([entry]).contains(str(address)) is (address in network)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(v4_ints, st.integers(0, 32), st.booleans(), st.booleans()), min_size=1, max_size=4
    ),
    v4_ints,
)
def test_ipv4_and_mapped_forms_are_interchangeable(
    entries: list[tuple[int, int, bool, bool]], peer: int
) -> None:
    plain, mapped = [], []
    for base, prefix, as_network, write_mapped in entries:
        v4 = str(ipaddress.IPv4Address(base))
        plain.append(f"{v4}/{prefix}" if as_network else v4)
        as_v6 = f"::ffff:{v4}"
        mapped_entry = f"{as_v6}/{prefix + 96}" if as_network else as_v6
        mapped.append(mapped_entry if write_mapped else plain[-1])
    v4_peer = str(ipaddress.IPv4Address(peer))
    expected = IPChecker(plain).contains(v4_peer)
    for checker in (IPChecker(plain), IPChecker(mapped)):
        assert checker.contains(v4_peer) is expected
        assert checker.contains(f"::ffff:{v4_peer}") is expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789.", max_size=16))
def test_peer_ipv4_syntax_is_as_strict_as_ipaddress(text: str) -> None:
    try:
        ipaddress.IPv4Address(text)
        valid = True
    except ValueError:
        valid = False
    assert IPChecker(["0.0.0.0/0"]).contains(text) is valid


# One checker for every example: its remembered answers must stay the answers a fresh one gives.
_SHARED = IPChecker(["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(v4_ints.map(lambda v: str(ipaddress.IPv4Address(v))),
                 v6_ints.map(lambda v: str(ipaddress.IPv6Address(v))),
                 st.sampled_from(["10.1.2.3", "10.1.2.3%eth0", "192.168.1.7", "::ffff:10.9.9.9",
                                  "2001:db8::1", "010.1.2.3", "not an ip", ""])))
def test_a_checker_answers_a_repeated_address_as_a_fresh_checker_does(address: str) -> None:
    fresh = IPChecker(list(_SHARED.entries)).contains(address)
    assert _SHARED.contains(address) is fresh
    assert _SHARED.contains(address) is fresh  # the second time from what it remembers


def test_a_checker_stays_right_past_the_number_of_answers_it_keeps() -> None:
    checker = IPChecker(["10.0.0.0/16"])
    for third in range(40):  # 10,240 distinct addresses, over twice what it keeps
        for fourth in range(256):
            assert checker.contains(f"10.{third % 2}.{third}.{fourth}") is (third % 2 == 0)
    assert checker.contains("10.0.0.1") and not checker.contains("10.1.0.1")


# --- addresses with a port (IsAuthorized) -------------------------------------------------


@given(st.ip_addresses().map(str), st.integers(0, 65535))
def test_split_host_takes_the_host_out_of_any_host_port(address: str, port: int) -> None:
    assert split_host(host_port(address, port)) == address


@given(st.ip_addresses().map(str))
def test_a_bare_address_does_not_split(address: str) -> None:
    assert split_host(address) == address


@pytest.mark.parametrize(("text", "host"), [
    ("1.2.3.4:", "1.2.3.4"),          # an empty port splits, as in Go
    ("[::1]", "[::1]"),               # missing port
    ("[::1]x:80", "[::1]x:80"),       # junk between ] and :
    ("a[b:80", "a[b:80"),             # unexpected [
    ("[fe80::1%eth0]:80", "fe80::1%eth0"),
    ("", ""),
])
def test_split_host_edge_cases_follow_go(text: str, host: str) -> None:
    assert split_host(text) == host


@settings(max_examples=300, deadline=None)
@given(st.one_of(v4_ints.map(lambda v: str(ipaddress.IPv4Address(v))),
                 v6_ints.map(lambda v: str(ipaddress.IPv6Address(v))),
                 st.sampled_from(["10.1.2.3", "192.168.1.7", "2001:db8::1", "not an ip", ""])),
       st.sampled_from(["{}", "{}:80", "[{}]:80", "{}:", "[{}]"]))
def test_authorizes_checks_the_host_of_an_address_as_contains_does(host: str,
                                                                   shape: str) -> None:
    address = shape.format(host)
    expected = IPChecker(list(_SHARED.entries)).contains(split_host(address))
    assert _SHARED.authorizes(address) is expected
    assert _SHARED.authorizes(address) is expected  # the second time from what it remembers
    # What contains remembers of the bare text is not mistaken for the address's answer.
    assert _SHARED.contains(address) is IPChecker(list(_SHARED.entries)).contains(address)
