from pathlib import Path

import pytest

from ot2wheels.aptsource import debian_mirror, host_sources
from ot2wheels.errors import ToolchainError


def test_reads_deb822_and_one_line_sources_skipping_security(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "a.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
    )
    (tmp_path / "sources.list").write_text("# comment\ndeb [arch=amd64] http://other.example/debian bookworm main\n")
    assert ("http://other.example/debian", ["bookworm"]) in host_sources(tmp_path)
    assert debian_mirror(tmp_path) == "http://other.example/debian"


def test_no_debian_source_says_what_to_set(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://ppa.example/ubuntu jammy main\n")
    with pytest.raises(ToolchainError, match="mirror"):  # and no debootstrap to fall back on
        debian_mirror(tmp_path, debootstrap=tmp_path / "no-debootstrap", env={})


def test_this_host_has_a_debian_mirror() -> None:
    assert debian_mirror().startswith(("http://", "https://"))


UBUNTU_SOURCES = ("Types: deb\nURIs: http://archive.ubuntu.example/ubuntu\nSuites: noble noble-updates\n"
                  "Components: main universe\nSigned-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n")


def _ubuntu_host(tmp_path: Path, default_mirror: str | None) -> tuple[Path, Path]:
    """An Ubuntu runner's apt configuration (no Debian entry) and debootstrap's scripts."""
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "ubuntu.sources").write_text(UBUNTU_SOURCES)
    deb = tmp_path / "debootstrap"
    (deb / "scripts").mkdir(parents=True)
    if default_mirror:
        (deb / "scripts" / "sid").write_text(f"mirror_style release\ndefault_mirror {default_mirror}\n")
        (deb / "scripts" / "bookworm").symlink_to("sid")
    return apt, deb


def test_ubuntu_host_falls_back_to_debootstraps_debian_archive(tmp_path: Path) -> None:
    apt, deb = _ubuntu_host(tmp_path, "http://debian.example/debian/")
    assert debian_mirror(apt, suite="bookworm", debootstrap=deb, env={}) == "http://debian.example/debian"
    assert debian_mirror(apt, debootstrap=deb, env={"OT2WHEELS_DEBIAN_MIRROR": "http://m.example/debian"}) == \
        "http://m.example/debian"  # configurable
    apt, bare = _ubuntu_host(tmp_path / "bare", None)
    with pytest.raises(ToolchainError, match="OT2WHEELS_DEBIAN_MIRROR"):
        debian_mirror(apt, debootstrap=bare, env={})


@pytest.mark.integration
def test_ubuntu_host_sysroot_lists_come_from_the_fallback_verified_by_the_debian_keyring(
        tmp_path: Path, repo_project, monkeypatch) -> None:
    """The sysroot step's apt, on a host whose apt sources are Ubuntu's only: it takes the Debian
    archive debootstrap names (here a loopback stand-in serving the real, Debian-signed bookworm
    InRelease and armhf Packages) and verifies them with the Debian keyring; a tampered Packages
    file is refused."""
    import shutil
    import subprocess

    from conftest import serve_directory

    from ot2wheels import aptsource
    from ot2wheels.toolchains import get_toolchain
    from ot2wheels.toolchains.debapt import PrivateApt

    target = repo_project.targets.get("bookworm-armhf")
    get_toolchain(target, repo_project.layout).ensure()  # the real lists, fetched and verified once
    lists = repo_project.layout.cache / "apt" / target.name / "lists"
    (inrelease,) = lists.glob("*_debian_dists_bookworm_InRelease")
    (packages_lz4,) = lists.glob("*_debian_dists_bookworm_main_binary-armhf_Packages.lz4")
    archive = tmp_path / "archive"
    dists = archive / "debian" / "dists" / "bookworm"
    (dists / "main" / "binary-armhf").mkdir(parents=True)
    shutil.copyfile(inrelease, dists / "InRelease")
    subprocess.run(["lz4", "-d", "-q", str(packages_lz4), str(dists / "main" / "binary-armhf" / "Packages")],
                   check=True)
    source = target.debian.__class__(suites=("bookworm",), keyring=target.debian.keyring, packages=("libc6",))
    with serve_directory(archive) as url:
        apt_dir, deb = _ubuntu_host(tmp_path, f"{url}/debian")
        monkeypatch.setattr(aptsource, "APT_DIR", apt_dir)
        monkeypatch.setattr(aptsource, "DEBOOTSTRAP", deb)
        monkeypatch.delenv("OT2WHEELS_DEBIAN_MIRROR", raising=False)
        apt = PrivateApt(tmp_path / "state", source, "armhf")
        apt.prepare()
        assert f"signed-by={target.debian.keyring}] {url}/debian bookworm main" in \
            (tmp_path / "state" / "sources.list").read_text()
        apt.update(force=True)
        assert "libc6" in apt.closure(["libc6"], ())  # the verified lists are in use
        packages = dists / "main" / "binary-armhf" / "Packages"
        packages.write_bytes(packages.read_bytes().replace(b"Package: libc6\n", b"Package: libc7\n", 1))
        shutil.rmtree(tmp_path / "state" / "lists")
        (tmp_path / "state" / "lists" / "partial").mkdir(parents=True)
        with pytest.raises(ToolchainError) as refused:
            apt.update(force=True)
        assert "Hash Sum mismatch" in str(refused.value)
