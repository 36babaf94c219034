"""Pure functions from index entries to page bytes: PEP 503 HTML, PEP 691 JSON, PEP 658/714.

Every function here is deterministic: same entries in, same bytes out (sorted, no timestamps).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NamedTuple

from . import instructions
from .instructions import url_quote as quote
from .model import Failure, ProjectRow, TargetInfo, WheelEntry, YankList, parse_version, project_row

if TYPE_CHECKING:
    from collections.abc import Iterable

API_VERSION = "1.1"  # PEP 691 + PEP 700 (versions, size)
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_CONTENT_TYPE = "application/vnd.pypi.simple.v1+html"


def escape(text: str) -> str:
    """html.escape(text): importing the html module (its table of entities) cost more than
    rendering the pages publishing one wheel rewrites."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#x27;"))


_PLAIN = instructions.UNRESERVED  # what quote() and escape() leave as it is


def _all_plain(texts: Iterable[str]) -> bool:
    """Whether quote() and escape() leave every one of `texts` as it is: one match over all the
    names and versions of a page listing every project instead of quote() and escape() per cell
    (~3 ms of publishing one wheel into an index of 10,000)."""
    return _PLAIN.fullmatch("".join(texts)) is not None


class Links(NamedTuple):
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
    if _PLAIN.fullmatch(part):  # every canonical project name: the landing page has thousands
        return part
    return escape(quote(part, safe=""))


def _json_bytes(data: dict[str, Any]) -> bytes:
    # Compact separators keep json's C encoder in use (indent would select the slow pure-Python one).
    return (json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False) + "\n").encode()


# A string as json.dumps(..., ensure_ascii=False) writes it (json's own C function for that).
_json_str = json.encoder.encode_basestring


def root_html(project_names: list[str], target: str, links: Links) -> bytes:
    base = links.base_url or ""
    plain = _all_plain([target, *project_names]) and escape(base) == base
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        f"    <title>Simple index: {escape(target)}</title>",
        "  </head>",
        "  <body>",
    ]
    if plain:  # quoting and escaping change nothing: links.project()'s plain form, one format per project
        start = f"{links.base_url.rstrip('/')}/{target}/simple/" if links.base_url else ""
        lines += [f'    <a href="{start}{name}/">{name}</a><br>' for name in sorted(project_names)]
    else:
        lines += [f'    <a href="{escape(links.project(target, name))}">{escape(name)}</a><br>'
                  for name in sorted(project_names)]
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
        python = f' data-requires-python="{escape(e.requires_python)}"' if e.requires_python else ""
        reason = yanks.status(e)
        yanked = f' data-yanked="{escape(reason)}"' if reason is not None else ""
        # PEP 658's old attribute name and PEP 714's
        lines.append(f'    <a href="{escape(links.file(e))}#sha256={e.sha256}"{python}'
                     f' data-dist-info-metadata="sha256={e.metadata_sha256}"'
                     f' data-core-metadata="sha256={e.metadata_sha256}"{yanked}>{escape(e.filename)}</a><br>')
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode()


def project_json(project: str, entries: list[WheelEntry], yanks: YankList, links: Links) -> bytes:
    """The PEP 691 project page: the bytes json.dumps(doc, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False) writes (a test compares them), put together directly: json.dumps was half
    the cost of a full build's project pages. PEP 714's key only: pip 23.0 (Debian bookworm's)
    crashes on the old key `dist-info-metadata` holding a dict (TypeError: unhashable type: 'dict')."""
    js = _json_str
    files = []
    for e in _sorted(entries):
        reason = yanks.status(e)
        # keys in sorted order, as sort_keys gives them
        files.append(
            f'{{"core-metadata":{{"sha256":{js(e.metadata_sha256)}}},"filename":{js(e.filename)},'
            f'"hashes":{{"sha256":{js(e.sha256)}}},'
            + (f'"requires-python":{js(e.requires_python)},' if e.requires_python else "")
            + f'"size":{int(e.size)},"upload-time":{js(e.upload_time)},"url":{js(links.file(e))},'
            f'"yanked":{"false" if reason is None else js(reason) if reason else "true"}}}')
    versions = ",".join(js(v) for v in sorted({e.version for e in entries}, key=parse_version))
    return (f'{{"files":[{",".join(files)}],"meta":{{"api-version":{js(API_VERSION)}}},"name":{js(project)},'
            f'"versions":[{versions}]}}\n').encode()


def project_rows(entries: list[WheelEntry], yanks: YankList) -> list[ProjectRow]:
    """One row per (target, project) of `entries`, sorted."""
    groups: dict[tuple[str, str], list[WheelEntry]] = {}
    for e in entries:
        groups.setdefault((e.target, e.project), []).append(e)
    return [project_row(t, p, groups[(t, p)], yanks) for t, p in sorted(groups)]


def constraints_txt(target: str, entries: list[WheelEntry], yanks: YankList) -> bytes:
    """Pins the newest non-yanked version of every project of a target."""
    return constraints_from_rows(target, [r for r in project_rows(entries, yanks) if r.target == target])


def constraints_from_rows(target: str, rows: list[ProjectRow]) -> bytes:
    lines = [f"# Newest version of every project in the {target} index (generated by ot2wheels)."]
    lines += [f"{r.project}=={r.newest}" for r in sorted(rows, key=lambda r: r.project) if r.newest is not None]
    return ("\n".join(lines) + "\n").encode()


Failures = dict[tuple[str, str], Failure]  # (target, project) -> its newest build failed


def _failure_text(f: Failure, served: list[str]) -> str:
    still = f"pip installs {served[0]}, the newest version published here" if served else "nothing is published"
    return f"newest build failed: {f.version}: {f.error} ({still})"


def _machine(t: TargetInfo) -> str:
    """"64-bit ARM Linux (aarch64)", from the target's arch; "" when the target is unknown."""
    if not t.machine:
        return ""
    return f"{t.arch} Linux ({t.machine})" if t.arch else f"Linux ({t.machine})"


def _machines(targets: list[TargetInfo]) -> str:
    known = sorted({_machine(t) for t in targets} - {""})
    if not known:
        return "the Linux devices of the targets below"
    return known[0] if len(known) == 1 else ", ".join(known[:-1]) + " and " + known[-1]


def landing_html(targets: list[TargetInfo], entries: list[WheelEntry], yanks: YankList,
                 base_url: str | None, failures: Failures | None = None) -> bytes:
    """The index's front page, for people: what is here per target, and how to use it."""
    return landing_from_rows(targets, project_rows(entries, yanks), base_url, failures)


def landing_row(target: str, project: str, versions: tuple[str, ...], failed: Failure | None,
                plain: bool = False) -> str:
    """The landing page's table row of one project of one target (`plain`: `_all_plain` holds
    for the target, the project and its versions)."""
    status = (f'<td class="failed">{escape(_failure_text(failed, list(versions)))}</td>' if failed
              else "<td>passed</td>")
    name, shown = project, ", ".join(versions)
    if not plain:
        name, project, shown, target = attr_url(project), escape(project), escape(shown), attr_url(target)
    return (f'      <tr><td><a href="project/{name}/">{project}</a></td>'
            f"<td>{shown or '&mdash;'}</td>"
            f'<td><a href="{target}/simple/{name}/">simple</a></td>{status}</tr>')


def landing_from_rows(targets: list[TargetInfo], rows: list[ProjectRow], base_url: str | None,
                      failures: Failures | None = None) -> bytes:
    """landing_html from the state's rows (sorted by target and project)."""
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
        f"    <p>Wheels cross-built for {escape(_machines(targets))} and tested under emulation. "
        "Each target below has its own index: use the one that matches your device's "
        "architecture (<code>uname -m</code>), operating system and Python.</p>",
        '    <p>Build and test status of every package: <a href="report/">report/</a> '
        "(written by <code>invoke report</code>).</p>",
    ]
    if base_url is None:
        out.append("    <p>In the commands below, replace <code>BASE_URL</code> with the address "
                   "this directory is served at (for example the URL <code>invoke index.serve</code> "
                   "prints).</p>")
    by_target: dict[str, dict[str, tuple[str, ...]]] = {}
    for r in rows:
        by_target.setdefault(r.target, {})[r.project] = r.versions
    plain = _all_plain([*(p for _t, p in failures or ()), *(r.project for r in rows),
                        *(v for r in rows for v in r.versions)])
    for t in sorted(targets, key=lambda t: t.name):
        simple, constraints = instructions.urls(t, base)
        facts = ", ".join(x for x in (
            t.description,
            _machine(t),
            f"CPython {t.python}" if t.python else "",
            t.platform,
            f"glibc {t.glibc}" if t.glibc else "") if x)
        href = attr_url(t.name)
        out.append(f'    <h2 id="{href}">{escape(t.name)}</h2>')
        if facts:
            out.append(f"    <p>{escape(facts)}</p>")
        out.append(f'    <p>Simple index: <a href="{href}/simple/">{escape(simple)}</a> '
                   f'&middot; constraints: <a href="{href}/constraints.txt">{escape(constraints)}</a></p>')
        out.append("    <table><tr><th>project</th><th>versions served</th><th>simple index</th>"
                   "<th>newest build</th></tr>")
        served = by_target.get(t.name, {})
        failed = {p: f for (tn, p), f in (failures or {}).items() if tn == t.name}
        names = sorted(served.keys() | failed.keys()) if failed else served  # rows come sorted
        row_plain = plain and _all_plain([t.name])
        out += [landing_row(t.name, name, served.get(name, ()), failed.get(name), row_plain) for name in names]
        out.append("    </table>")
        for ins in instructions.for_target(t, base):
            out.append(f"    <p>{ins.intro}</p>")
            out.append(f'    <pre data-instruction="{ins.kind}">{escape(ins.text)}</pre>')
    out += ["  </body>", "</html>", ""]
    return "\n".join(out).encode()


def project_page(project: str, entries: list[WheelEntry], failures: Failures, yanks: YankList,
                 base_url: str | None) -> bytes:
    """A project's page for people (`project/<name>/`): every version x target with its wheel,
    size and upload date, what pip installs, and a failed newest build next to it. Linked from the
    landing page and the status report, and back to both."""
    base = escape(base_url.rstrip("/")) if base_url else "../.."  # escaped once: it is in every link
    by_target: dict[str, list[WheelEntry]] = {}
    for e in entries:
        by_target.setdefault(e.target, []).append(e)
    targets = sorted(set(by_target) | {t for (t, p) in failures if p == project})
    out = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        '    <meta charset="utf-8">',
        f"    <title>{escape(project)}: ot2wheels</title>",
        "    <style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
        ".failed{background:#f6d5d4}</style>",
        "  </head>",
        "  <body>",
        f'    <p><a href="{base}/index.html">all projects</a> &middot; '
        f'<a href="{base}/report/">build status report</a></p>',
        f"    <h1>{escape(project)}</h1>",
        "    <p>Every wheel here passed its build, its target check and its smoke test under emulation "
        "before it was published.</p>",
    ]
    name = attr_url(project)
    for t in targets:
        mine = sorted(by_target.get(t, []), key=lambda e: e.sort_key, reverse=True)
        versions = sorted({e.version for e in mine}, key=parse_version, reverse=True)
        href = attr_url(t)
        out.append(f'    <h2 id="{href}">{escape(t)}</h2>')
        failed = failures.get((t, project))
        if failed:
            log = f' (<a href="{base}/report/logs/{href}/{attr_url(failed.log)}">build log</a>)' \
                if failed.log else ""
            out.append(f'    <p class="failed">{escape(_failure_text(failed, versions))}{log}</p>')
        if versions:
            out.append(f"    <p>pip installs {escape(versions[0])} from "
                       f'<a href="{base}/{href}/simple/{name}/">the {escape(t)} index</a>.</p>')
        out.append("    <table><tr><th>version</th><th>wheel</th><th>size</th><th>published</th><th>smoke test</th></tr>")
        for e in mine:
            yanked = yanks.status(e)
            note = f" (yanked{': ' + escape(yanked) if yanked else ''})" if yanked is not None else ""
            out.append(f"      <tr><td>{escape(e.version)}{note}</td>"
                       f'<td><a href="{base}/{href}/files/{name}/{attr_url(e.filename)}">'
                       f"{escape(e.filename)}</a></td><td>{e.size / 1024:.0f} KiB</td>"
                       f"<td>{escape(e.upload_time[:10])}</td><td>passed</td></tr>")
        out.append("    </table>")
    out += ["  </body>", "</html>", ""]
    return "\n".join(out).encode()
