from pathlib import Path

import pytest
from packaging.tags import Tag

from ot2wheels.errors import ConfigError
from ot2wheels.targets import load_targets

REPO = Path(__file__).resolve().parents[1]


def test_repository_targets_load() -> None:
    ts = load_targets(REPO / "toolchain" / "targets.toml")
    bookworm, bullseye = ts.get("bookworm-armhf"), ts.get("bullseye-armhf")
    assert (bookworm.cp, bookworm.glibc) == ("cp311", (2, 36))
    assert (bullseye.cp, bullseye.glibc) == ("cp39", (2, 31))
    assert [t.name for t in ts.select(None)] == list(ts.default)


def test_bullseye_builds_cxx_against_its_own_libstdcxx() -> None:
    ts = load_targets(REPO / "toolchain" / "targets.toml")
    bullseye, bookworm = ts.get("bullseye-armhf").debian, ts.get("bookworm-armhf").debian
    assert bullseye is not None and bookworm is not None
    assert bullseye.libstdcxx == "10" and bullseye.all_packages[-1] == "libstdc++-10-dev"
    assert bookworm.libstdcxx is None and bookworm.all_packages == bookworm.packages


def test_platform_tags_stop_at_the_glibc_floor() -> None:
    bullseye = load_targets(REPO / "toolchain" / "targets.toml").get("bullseye-armhf")
    plats = bullseye.platform_tags()
    assert plats[0] == "manylinux_2_31_armv7l" and plats[-1] == "linux_armv7l"
    assert "manylinux_2_32_armv7l" not in plats and "manylinux2014_armv7l" in plats
    supported = set(bullseye.supported_tags())
    assert Tag("cp39", "cp39", "manylinux_2_17_armv7l") in supported
    assert Tag("py3", "none", "any") in supported
    assert Tag("cp39", "cp39", "manylinux_2_34_armv7l") not in supported
    assert Tag("cp311", "cp311", "linux_armv7l") not in supported



def test_common_tags_are_supported_tags_of_every_target() -> None:
    """The index accepts a wheel carrying one of common_tags() without computing the full set:
    each must be one packaging's tags module accepts for the target, and they must cover the
    everyday cases (pure, CPython-specific, abi3, manylinux)."""
    for t in load_targets(REPO / "toolchain" / "targets.toml").targets.values():
        supported = {str(tag) for tag in t.supported_tags()}
        common = t.common_tags()
        assert common <= supported, (t.name, sorted(common - supported))
        assert {"py3-none-any", f"{t.cp}-{t.cp}-{t.platform}", f"{t.cp}-abi3-{t.platform}",
                f"{t.cp}-{t.cp}-manylinux_2_17_{t.arch}"} <= common

def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "targets.toml"
    p.write_text(body)
    return p


GOOD = """
[targets.x]
python = "3.11"
platform = "linux_armv7l"
glibc = "2.36"
triplet = "arm-linux-gnueabihf"
provider = "debian"
[targets.x.debian]
suites = ["bookworm"]
keyring = "/k.gpg"
packages = ["libc6-dev"]
"""


@pytest.mark.parametrize(
    "change, message",
    [
        (('python = "3.11"', 'python = "three"'), "targets.x.python"),
        (('python = "3.11"', 'python = "3.11.2"'), "major.minor only"),
        (('provider = "debian"', 'provider = "conda"'), "targets.x.provider"),
        (('glibc = "2.36"', 'glibc = "new"'), "targets.x.glibc"),
        (('triplet = "arm-linux-gnueabihf"', 'tripplet = "x"'), "unknown field"),
        (('suites = ["bookworm"]', 'suites = "bookworm"'), "suites"),
        (('provider = "debian"', 'provider = "debian"\narch = "riscv64"'), "targets.x.arch: 'riscv64' is not one of"),
        (('provider = "debian"', 'provider = "debian"\narch = "arm64"'),
         "targets.x.platform: 'linux_armv7l' does not match arch = 'arm64'; expected 'linux_aarch64'"),
        (('packages = ["libc6-dev"]', 'packages = ["libc6-dev"]\nlibstdcxx = 10'), "targets.x.debian.libstdcxx"),
    ],
)
def test_bad_targets_name_file_and_field(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as err:
        load_targets(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_unknown_target_lists_the_known_ones(tmp_path: Path) -> None:
    ts = load_targets(_write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="known targets: x"):
        ts.get("y")


def test_arm64_targets_follow_from_the_arch() -> None:
    ts = load_targets(REPO / "toolchain" / "targets.toml")
    arm64, armhf = ts.get("bookworm-arm64"), ts.get("bookworm-armhf")
    assert (arm64.arch, arm64.architecture.debian, arm64.architecture.qemu) == ("aarch64", "arm64", "qemu-aarch64")
    assert (armhf.arch, armhf.architecture.debian, armhf.architecture.qemu) == ("armv7l", "armhf", "qemu-arm")
    assert arm64.platform_tags()[0] == "manylinux_2_36_aarch64" and "manylinux2014_aarch64" in arm64.platform_tags()
    assert not any("armv7l" in p for p in arm64.platform_tags())
    assert arm64.marker_environment()["platform_machine"] == "aarch64"
    assert "bookworm-arm64" not in ts.default  # named with --target: see the comment in targets.toml


def test_flex_is_a_planning_target() -> None:
    from ot2wheels.errors import ToolchainError
    from ot2wheels.paths import Layout
    from ot2wheels.toolchains import get_toolchain

    flex = load_targets(REPO / "toolchain" / "targets.toml").get("flex")
    assert (flex.python, flex.arch, flex.glibc, flex.provider, flex.buildable) == ("3.10", "aarch64", (2, 31), "none", False)
    supported = set(flex.supported_tags())
    assert Tag("cp310", "cp310", "manylinux_2_31_aarch64") in supported
    assert Tag("cp310", "cp310", "manylinux_2_34_aarch64") not in supported  # beyond the assumed floor
    assert Tag("cp310", "cp310", "manylinux2014_armv7l") not in supported
    with pytest.raises(ToolchainError, match=r"flex is a planning target.*invoke plan"):
        get_toolchain(flex, Layout(root=REPO, cache=REPO / "never-used", dist=REPO / "never-used"))


def test_building_for_a_planning_target_stops_before_writing(tmp_path: Path) -> None:
    from ot2wheels.errors import ToolchainError
    from ot2wheels.paths import Layout
    from ot2wheels.pipeline import Project

    project = Project.load(Layout(root=REPO, cache=tmp_path / "cache", dist=tmp_path / "dist"))
    with pytest.raises(ToolchainError, match="flex is a planning target"):
        project.matrix(["markupsafe"], ["flex"])
    assert not (tmp_path / "dist").exists()
    assert [t.name for _r, t in project.matrix(["markupsafe"], ["bookworm-arm64"])] == ["bookworm-arm64"]


def test_a_planning_target_cannot_be_a_default(tmp_path: Path) -> None:
    body = GOOD.replace('provider = "debian"', 'provider = "none"')
    with pytest.raises(ConfigError, match="default names 'x', a planning target"):
        load_targets(_write(tmp_path, 'default = ["x"]\n' + body))


def test_unknown_top_level_keys_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, 'defaults = ["x"]\n' + GOOD)  # a typo of `default`
    with pytest.raises(ConfigError, match=r"targets.toml: unknown key\(s\) \['defaults'\]; allowed: \['default', 'targets'\]"):
        load_targets(path)


def test_sdk_table_of_a_buildroot_target_is_typed_and_checked(tmp_path: Path) -> None:
    body = GOOD.replace('provider = "debian"', 'provider = "buildroot-sdk"')
    assert load_targets(_write(tmp_path, body)).get("x").sdk.name == "ot2"  # the default pin
    named = load_targets(_write(tmp_path, body + '\n[targets.x.sdk]\nname = "flex"\n'))
    assert named.get("x").sdk.name == "flex"
    with pytest.raises(ConfigError, match=r"targets.x.sdk: unknown field\(s\) \['nmae'\]; allowed: \['name'\]"):
        load_targets(_write(tmp_path, body + '\n[targets.x.sdk]\nnmae = "flex"\n'))
    with pytest.raises(ConfigError, match=r"targets.x.sdk.name: expected a string"):
        load_targets(_write(tmp_path, body + '\n[targets.x.sdk]\nname = 2\n'))
