"""mlenv.solve.platforms: every [system] version the spec accepts (1 to 4 numeric parts)
gives wheel tags and a uv platform; "11" means 11.0."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mlenv.solve.platforms import python_platform, wheel_tags
from mlenv.spec import VERSION_RE

versions = st.lists(st.integers(0, 40).map(str), min_size=1, max_size=4).map(".".join)


def test_a_one_part_macos_version_is_major_dot_zero():
    # packaging.tags.mac_platforms needs (major, minor): osx = "11" raised IndexError before
    assert wheel_tags("osx-arm64", "3.11", osx="11") == wheel_tags("osx-arm64", "3.11", osx="11.0")
    assert "cp311-cp311-macosx_11_0_arm64" in {str(t) for t in wheel_tags("osx-arm64", "3.11", osx="11")}


def test_a_one_part_glibc_version_is_major_dot_zero():
    assert python_platform("linux-64", glibc="2") == "x86_64-manylinux_2_0"
    assert python_platform("linux-64", glibc="2.28.1") == "x86_64-manylinux_2_28"
    assert "cp311-cp311-linux_x86_64" in {str(t) for t in wheel_tags("linux-64", "3.11", glibc="2")}


@given(version=versions)
def test_every_accepted_system_version_gives_tags(version):
    assert VERSION_RE.match(version)
    for platform in ("linux-64", "linux-aarch64", "osx-64", "osx-arm64"):
        assert wheel_tags(platform, "3.11", glibc=version, osx=version)
        assert python_platform(platform, glibc=version, osx=version)
