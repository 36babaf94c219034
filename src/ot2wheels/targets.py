"""Targets as data: `toolchain/targets.toml` loaded into frozen dataclasses, validated on load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.version import InvalidVersion, Version

from .errors import ConfigError, ToolchainError
from .tomlfile import check_keys, read_table
from .wheelname import canonical_name

if TYPE_CHECKING:  # packaging.tags is imported where tags are computed: publishing one wheel does not
    from packaging import tags

# "none": a planning target (`invoke plan`): the device's Python/glibc/platform, no toolchain.
PROVIDERS = ("debian", "buildroot-sdk", "none")
_TARGET_KEYS = {"description", "python", "platform", "glibc", "triplet", "provider", "site",
                "debian", "sdk", "arch", "device"}


@dataclass(frozen=True)
class Arch:
    """What follows from a CPU architecture, in one place (targets name it with `arch`)."""

    debian: str  # Debian's name: the .debs of the sysroot
    machine: str  # uname -m: wheel platform tags linux_<machine>, manylinux_*_<machine>
    qemu: str  # qemu-user binary that runs its programs
    elf_machine: str  # e_machine every ELF file in a wheel must have
    elf_class: int  # 32 or 64
    multiarch: str  # Debian multiarch tuple: lib dirs, _sysconfigdata__linux_<multiarch>
    armhf_abi: bool = False  # 32-bit ARM: EABI5 and the hard-float flag are checked too
    label: str = ""  # for people: "32-bit ARM"

    @property
    def elf_summary(self) -> str:
        """What the gate checks, in words."""
        return "ARM EABI5 hard-float" if self.armhf_abi else f"{self.elf_machine.removeprefix('EM_')} ELF{self.elf_class}"


ARCHES: dict[str, Arch] = {
    a.debian: a for a in (
        Arch("armhf", "armv7l", "qemu-arm", "EM_ARM", 32, "arm-linux-gnueabihf", armhf_abi=True,
             label="32-bit ARM"),
        Arch("arm64", "aarch64", "qemu-aarch64", "EM_AARCH64", 64, "aarch64-linux-gnu", label="64-bit ARM"),
    )
}
_DEBIAN_KEYS = {"suites", "keyring", "packages", "exclude", "mirror", "libstdcxx"}


@dataclass(frozen=True)
class DebianSource:
    """How to assemble a sysroot from a Debian suite's packages (of the target's arch)."""

    suites: tuple[str, ...]
    keyring: str
    packages: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    mirror: str | None = None  # None: the first Debian mirror the host's apt already uses
    # The suite's own libstdc++ major ("10" on bullseye): C++ is compiled against its headers
    # (libstdc++-N-dev in the sysroot) instead of the cross g++'s newer ones, whose inline code
    # references GLIBCXX symbols the target's libstdc++.so.6 does not have.
    libstdcxx: str | None = None

    @property
    def all_packages(self) -> tuple[str, ...]:
        """`packages` plus what the options above need in the sysroot."""
        extra = (f"libstdc++-{self.libstdcxx}-dev",) if self.libstdcxx else ()
        return (*self.packages, *(e for e in extra if e not in self.packages))


@dataclass(frozen=True)
class TargetSdk:
    """`[targets.NAME.sdk]` of a buildroot-sdk target: which `[sdk.NAME]` pin of toolchain/sdk.toml."""

    name: str = "ot2"


_SDK_KEYS = {"name"}


def _libstdcxx(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not (isinstance(value, str) and value.isdigit()):
        raise ConfigError(f"{where}: expected the suite's libstdc++ major version as a string, like \"10\" "
                          f"(the N of its libstdc++-N-dev package), got {value!r}")
    return value


@dataclass(frozen=True)
class Target:
    name: str
    python: str  # "3.11"
    platform: str  # "linux_armv7l"
    glibc: tuple[int, int]
    triplet: str
    provider: str
    description: str = ""
    site: str = ""
    debian: DebianSource | None = None
    sdk: TargetSdk | None = None  # buildroot-sdk targets only
    architecture: Arch = ARCHES["armhf"]
    # What the device already has in its system site-packages (canonical name -> version):
    # builds against a target-side dependency never use a newer one (ABI floor).
    device: tuple[tuple[str, str], ...] = ()

    @property
    def device_packages(self) -> dict[str, str]:
        return dict(self.device)

    @property
    def python_tuple(self) -> tuple[int, int]:
        major, minor = self.python.split(".")
        return int(major), int(minor)

    @property
    def cp(self) -> str:
        """Interpreter/ABI tag, e.g. cp311."""
        return "cp{}{}".format(*self.python_tuple)

    @property
    def arch(self) -> str:
        """armv7l / aarch64: the machine of the platform tag (linux_armv7l); on load it must
        match `architecture.machine`."""
        return self.platform.split("_", 1)[1]

    @property
    def buildable(self) -> bool:
        """False for planning targets (provider "none"): nothing can be built for them."""
        return self.provider != "none"

    def require_buildable(self) -> None:
        if not self.buildable:
            raise ToolchainError(
                f"target {self.name} is a planning target (provider = \"none\" in toolchain/targets.toml): "
                "use it with `invoke plan`; to build, pick a target with a toolchain (`invoke toolchain.info`)"
            )

    @property
    def glibc_str(self) -> str:
        return "{}.{}".format(*self.glibc)

    def platform_tags(self) -> list[str]:
        """Platform tags a wheel may carry and still load here, most specific first.

        manylinux_2_X for every X up to the target's glibc (PEP 600), the legacy
        manylinux2014 alias of 2_17, then the plain linux tag.
        """
        out = [f"manylinux_2_{minor}_{self.arch}" for minor in range(self.glibc[1], 16, -1)]
        if self.glibc >= (2, 17):
            out.append(f"manylinux2014_{self.arch}")
        out.append(self.platform)
        return out

    def common_tags(self) -> frozenset[str]:
        """The tags of nearly every wheel built or published for this target (pure Python, or
        CPython-specific for one of its platform tags): a subset of supported_tags(), made
        without importing packaging.tags (logging, subprocess, platform, sysconfig), which cost
        a full index build more than checking a thousand wheels' tags.
        tests/test_targets.py checks the subset on every target."""
        py = "py{}{}".format(*self.python_tuple)
        out = {"py3-none-any", f"{py}-none-any", f"{self.cp}-none-any"}
        for plat in self.platform_tags():
            out |= {f"{self.cp}-{self.cp}-{plat}", f"{self.cp}-abi3-{plat}", f"{self.cp}-none-{plat}",
                    f"{py}-none-{plat}", f"py3-none-{plat}"}
        return frozenset(out)

    def supported_tags(self) -> list[tags.Tag]:
        """Every wheel tag the target's CPython accepts, in preference order."""
        from packaging import tags

        platforms = self.platform_tags()
        return [
            *tags.cpython_tags(self.python_tuple, platforms=platforms),
            *tags.compatible_tags(self.python_tuple, interpreter=self.cp, platforms=platforms),
        ]

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values of the target's interpreter, for resolving dependencies."""
        major, minor = self.python_tuple
        return {
            "implementation_name": "cpython",
            "implementation_version": f"{major}.{minor}.0",
            "os_name": "posix",
            "platform_machine": self.arch,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": f"{major}.{minor}.0",
            "python_version": f"{major}.{minor}",
            "sys_platform": "linux",
        }


@dataclass(frozen=True)
class TargetSet:
    targets: dict[str, Target]
    default: tuple[str, ...]
    source: Path

    def get(self, name: str) -> Target:
        try:
            return self.targets[name]
        except KeyError:
            known = ", ".join(sorted(self.targets))
            raise ConfigError(f"{self.source}: no target named {name!r}; known targets: {known}") from None

    def select(self, names: list[str] | tuple[str, ...] | None) -> list[Target]:
        return [self.get(n) for n in (names or self.default)]


def _need(table: dict[str, Any], key: str, where: str, kind: type = str) -> Any:
    if key not in table:
        raise ConfigError(f"{where}: missing field {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise ConfigError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


def _parse_target(name: str, table: dict[str, Any], path: Path) -> Target:
    where = f"{path}: targets.{name}"
    check_keys(table, _TARGET_KEYS, where)
    python = _need(table, "python", where)
    try:
        pv = Version(python)
    except InvalidVersion:
        raise ConfigError(f"{where}.python: {python!r} is not a version like '3.11'") from None
    if len(pv.release) != 2:
        raise ConfigError(f"{where}.python: give major.minor only (like '3.11'), not {python!r}")
    glibc_s = _need(table, "glibc", where)
    try:
        gmaj, gmin = (int(p) for p in glibc_s.split("."))
    except ValueError:
        raise ConfigError(f"{where}.glibc: {glibc_s!r} is not a version like '2.31'") from None
    provider = _need(table, "provider", where)
    if provider not in PROVIDERS:
        raise ConfigError(f"{where}.provider: {provider!r} is not one of {PROVIDERS}")
    debian = None
    if provider == "debian":
        dt = _need(table, "debian", where, dict)
        dwhere = f"{where}.debian"
        check_keys(dt, _DEBIAN_KEYS, dwhere)
        debian = DebianSource(
            suites=_string_list(_need(dt, "suites", dwhere, list), f"{dwhere}.suites"),
            keyring=_need(dt, "keyring", dwhere),
            packages=_string_list(_need(dt, "packages", dwhere, list), f"{dwhere}.packages"),
            exclude=_string_list(dt.get("exclude", []), f"{dwhere}.exclude"),
            mirror=dt.get("mirror"),
            libstdcxx=_libstdcxx(dt.get("libstdcxx"), f"{dwhere}.libstdcxx"),
        )
    sdk = None
    if provider == "buildroot-sdk":
        sdk_table = check_keys(table.get("sdk", {}), _SDK_KEYS, f"{where}.sdk")
        if not isinstance(sdk_table.get("name", ""), str):
            raise ConfigError(f"{where}.sdk.name: expected a string like \"ot2\" (an [sdk.NAME] of toolchain/sdk.toml)")
        sdk = TargetSdk(**sdk_table)
    arch_name = table.get("arch", "armhf")
    if arch_name not in ARCHES:
        raise ConfigError(f"{where}.arch: {arch_name!r} is not one of {sorted(ARCHES)}")
    architecture = ARCHES[arch_name]
    platform = _need(table, "platform", where)
    if platform != f"linux_{architecture.machine}":
        raise ConfigError(f"{where}.platform: {platform!r} does not match arch = {arch_name!r}; "
                          f"expected 'linux_{architecture.machine}'")
    return Target(
        device=_device(table.get("device", {}), f"{where}.device"),
        name=name,
        python=f"{pv.release[0]}.{pv.release[1]}",
        platform=platform,
        glibc=(gmaj, gmin),
        triplet=_need(table, "triplet", where),
        provider=provider,
        description=table.get("description", ""),
        site=table.get("site", ""),
        debian=debian,
        sdk=sdk,
        architecture=architecture,
    )


def _device(table: Any, where: str) -> tuple[tuple[str, str], ...]:
    """`device = { numpy = "1.21.6" }`: packages in the device's system site-packages."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table of package = \"version\"")
    out = []
    for pkg, version in table.items():
        try:
            Version(version if isinstance(version, str) else "")
        except InvalidVersion:
            raise ConfigError(f"{where}.{pkg}: {version!r} is not a version like '1.21.6'") from None
        out.append((canonical_name(pkg), version))
    return tuple(sorted(out))


def load_targets(path: Path) -> TargetSet:
    data = read_table(path, {"targets", "default"})
    tables = _need(data, "targets", str(path), dict)
    targets = {name: _parse_target(name, t, path) for name, t in tables.items()}
    default = _string_list(data.get("default", list(targets)), f"{path}: default")
    for name in default:
        if name not in targets:
            raise ConfigError(f"{path}: default names unknown target {name!r}")
        if not targets[name].buildable:
            raise ConfigError(f"{path}: default names {name!r}, a planning target (provider = "
                              "\"none\"): only buildable targets can be built by default")
    return TargetSet(targets=targets, default=default, source=path)


def pip_target_args(target: Target) -> list[str]:
    """Host pip options that select wheels for the target's interpreter and platforms (the smoke
    test's installs and the index's offline download line)."""
    args = ["--only-binary=:all:", "--python-version", target.python, "--implementation", "cp",
            "--abi", target.cp, "--abi", "abi3", "--abi", "none"]
    for plat in target.platform_tags():
        args += ["--platform", plat]
    return args
