# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The root recipe's pure parts: the mirror taken from apt's sources, and the cache key."""

from rootfs import PACKAGES, cache_key, mirror_from_sources

DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""
ONE_LINE = """# a comment
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://packages.example.com/apt cloud-sdk-bookworm main
deb http://mirror.example.org/debian/ bookworm main contrib
"""


def test_mirror_from_deb822_sources_skips_the_security_suite():
    assert mirror_from_sources([DEB822]) == "http://deb.debian.org/debian"


def test_mirror_from_one_line_sources_skips_other_suites_and_options():
    assert mirror_from_sources([ONE_LINE]) == "http://mirror.example.org/debian/"


def test_no_mirror_for_the_suite():
    assert mirror_from_sources([DEB822.replace("bookworm", "trixie"), "deb http://x/debian sid main\n"]) is None


def test_cache_key_follows_the_recipe():
    key = cache_key("http://deb.debian.org/debian")
    assert key == cache_key("http://deb.debian.org/debian", packages=tuple(reversed(PACKAGES)))
    assert key != cache_key("http://mirror.example.org/debian")
    assert key != cache_key("http://deb.debian.org/debian", packages=PACKAGES + ("vim",))
