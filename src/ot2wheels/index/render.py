"""Pure functions from index entries to page bytes: PEP 503 HTML, PEP 691 JSON, PEP 658/714.

Every function here is deterministic: same entries in, same bytes out (sorted, no timestamps).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from packaging.version import Version

from . import instructions
from .model import TargetInfo, WheelEntry, YankList

API_VERSION = "1.1"  # PEP 691 + PEP 700 (versions, size)
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_CONTENT_TYPE = "application/vnd.pypi.simple.v1+html"


@dataclass(frozen=True)
class Links:
    """How pages link to each other: relative (default) or under an absolute base URL.

    Layout (per target): <target>/simple/index.html, <target>/simple/<project>/index.html,
    <target>/files/<project>/<wheel> and <wheel>.metadata.
    """

    base_url: str | None = None

    def project(self, target: str, project: str) -> str:
        """Link from a target's root page to a project page."""
        if self.base_url:
            return f"{self.base_url.rstrip('/')}/{quote(target)}/simple/{quote(project)}/"
        return f"{quote(project)}/"

    def file(self, entry: WheelEntry) -> str:
        """Link from a project page to a wheel (without the hash fragment)."""
        tail = f"files/{quote(entry.project)}/{quote(entry.filename)}"
        if self.base_url:
            return f"{self.base_url.rstrip('/')}/{quote(entry.target)}/{tail}"
        return f"../../{tail}"


def attr_url(part: str) -> str:
    """A path segment (a target or project name) for an HTML attribute: URL-quoted, then escaped.

    Quoting keeps a name like `javascript:alert(3)` a relative path (the colon becomes %3A);
    escaping keeps the attribute closed whatever the name holds.
    """
    return escape(quote(part, safe=""))


def _json_bytes(data: dict[str, Any]) -> bytes:
    # Compact separators keep json's C encoder in use (indent would select the slow pure-Python one).
    return (json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False) + "\n").encode()


def root_html(project_names: list[str], target: str, links: Links) -> bytes:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        f"    <title>Simple index: {escape(target)}</title>",
        "  </head>",
        "  <body>",
    ]
    for name in sorted(project_names):
        lines.append(f'    <a href="{escape(links.project(target, name))}">{escape(name)}</a><br>')
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode()


def root_json(project_names: list[str]) -> bytes:
    return _json_bytes({
        "meta": {"api-version": API_VERSION},
        "projects": [{"name": n} for n in sorted(project_names)],
    })


def _sorted(entries: list[WheelEntry]) -> list[WheelEntry]:
    return sorted(entries, key=lambda e: e.sort_key)


def project_html(project: str, entries: list[WheelEntry], yanks: YankList, links: Links) -> bytes:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        f"    <title>Links for {escape(project)}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {escape(project)}</h1>",
    ]
    for e in _sorted(entries):
        attrs = [f'href="{escape(links.file(e))}#sha256={e.sha256}"']
        if e.requires_python:
            attrs.append(f'data-requires-python="{escape(e.requires_python)}"')
        attrs.append(f'data-dist-info-metadata="sha256={e.metadata_sha256}"')  # PEP 658 (old name)
        attrs.append(f'data-core-metadata="sha256={e.metadata_sha256}"')  # PEP 714
        reason = yanks.status(e)
        if reason is not None:
            attrs.append(f'data-yanked="{escape(reason)}"')
        lines.append(f"    <a {' '.join(attrs)}>{escape(e.filename)}</a><br>")
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode()


def project_json(project: str, entries: list[WheelEntry], yanks: YankList, links: Links) -> bytes:
    files = []
    for e in _sorted(entries):
        reason = yanks.status(e)
        item: dict[str, Any] = {
            "filename": e.filename,
            "url": links.file(e),
            "hashes": {"sha256": e.sha256},
            # PEP 714's name only: pip 23.0 (Debian bookworm's) crashes on the old JSON key
            # `dist-info-metadata` holding a dict (TypeError: unhashable type: 'dict').
            "core-metadata": {"sha256": e.metadata_sha256},
            "size": e.size,
            "upload-time": e.upload_time,  # PEP 700
            "yanked": (reason or True) if reason is not None else False,
        }
        if e.requires_python:
            item["requires-python"] = e.requires_python
        files.append(item)
    versions = sorted({e.version for e in entries}, key=Version)
    return _json_bytes({
        "meta": {"api-version": API_VERSION},
        "name": project,
        "versions": versions,
        "files": files,
    })


def constraints_txt(target: str, entries: list[WheelEntry], yanks: YankList) -> bytes:
    """Pins the newest non-yanked version of every project of a target."""
    newest: dict[str, Version] = {}
    for e in entries:
        if yanks.status(e) is not None:
            continue
        v = Version(e.version)
        if e.project not in newest or v > newest[e.project]:
            newest[e.project] = v
    lines = [f"# Newest version of every project in the {target} index (generated by ot2wheels)."]
    lines += [f"{name}=={newest[name]}" for name in sorted(newest)]
    return ("\n".join(lines) + "\n").encode()


def landing_html(targets: list[TargetInfo], entries: list[WheelEntry], yanks: YankList,
                 base_url: str | None) -> bytes:
    """The index's front page, for people: what is here per target, and how to use it."""
    base = base_url.rstrip("/") if base_url else "BASE_URL"
    out = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        '    <meta charset="utf-8">',
        "    <title>ot2wheels package index</title>",
        "    <style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "pre{background:#f4f4f4;padding:.6em;overflow-x:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}</style>",
        "  </head>",
        "  <body>",
        "    <h1>ot2wheels package index</h1>",
        "    <p>Wheels cross-built for 32-bit ARM Linux (armv7l) and tested under emulation. "
        "Each target below has its own index: use the one that matches your device's "
        "operating system and Python.</p>",
        '    <p>Build and test status of every package: <a href="report/">report/</a> '
        "(written by <code>invoke report</code>).</p>",
    ]
    if base_url is None:
        out.append("    <p>In the commands below, replace <code>BASE_URL</code> with the address "
                   "this directory is served at (for example the URL <code>invoke index.serve</code> "
                   "prints).</p>")
    for t in sorted(targets, key=lambda t: t.name):
        mine = [e for e in entries if e.target == t.name]
        simple, constraints = instructions.urls(t, base)
        facts = ", ".join(x for x in (
            t.description,
            f"CPython {t.python}" if t.python else "",
            t.platform,
            f"glibc {t.glibc}" if t.glibc else "") if x)
        href = attr_url(t.name)
        out.append(f'    <h2 id="{href}">{escape(t.name)}</h2>')
        if facts:
            out.append(f"    <p>{escape(facts)}</p>")
        out.append(f'    <p>Simple index: <a href="{href}/simple/">{escape(simple)}</a> '
                   f'&middot; constraints: <a href="{href}/constraints.txt">{escape(constraints)}</a></p>')
        out.append("    <table><tr><th>project</th><th>versions</th></tr>")
        by_project: dict[str, set[str]] = {}
        for e in mine:
            by_project.setdefault(e.project, set()).add(e.version)
        for name in sorted(by_project):
            versions = sorted(by_project[name], key=Version, reverse=True)
            out.append(f'      <tr><td><a href="{href}/simple/{attr_url(name)}/">{escape(name)}</a>'
                       f"</td><td>{escape(', '.join(versions))}</td></tr>")
        out.append("    </table>")
        for ins in instructions.for_target(t, base):
            out.append(f"    <p>{ins.intro}</p>")
            out.append(f'    <pre data-instruction="{ins.kind}">{escape(ins.text)}</pre>')
    out += ["  </body>", "</html>", ""]
    return "\n".join(out).encode()
