"""The distributions, as users install them, and the metadata that promises versions."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import django
import pytest

ROOT = Path(__file__).resolve().parent.parent


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def nox_matrix() -> dict[str, list[str]]:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "MATRIX":
            matrix: dict[str, list[str]] = ast.literal_eval(node.value)
            return matrix
    raise AssertionError("noxfile.py has no MATRIX")


def classifier_versions(prefix: str) -> set[str]:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    pattern = re.compile(rf"{re.escape(prefix)}(\d+\.\d+)")
    return {m[1] for c in project["classifiers"] if (m := pattern.fullmatch(c))}


def test_django_classifiers_match_the_tested_versions() -> None:
    assert classifier_versions("Framework :: Django :: ") == set(nox_matrix())


def test_python_classifiers_match_the_tested_versions() -> None:
    tested = {python for pythons in nox_matrix().values() for python in pythons}
    assert classifier_versions("Programming Language :: Python :: ") == tested


def test_documented_versions_are_the_tested_versions() -> None:
    table = re.findall(
        r"^(\d+\.\d+) +(3\.\d+(?:, 3\.\d+)*)$", (ROOT / "docs" / "upgrading.rst").read_text(), re.M
    )
    assert {django: pythons.split(", ") for django, pythons in table} == nox_matrix()


def test_lower_bounds_are_the_oldest_tested_versions() -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    matrix = nox_matrix()
    oldest_django = min(matrix, key=lambda v: tuple(map(int, v.split("."))))
    oldest_python = min((p for ps in matrix.values() for p in ps), key=lambda v: int(v[2:]))
    assert f"django>={oldest_django}" in project["dependencies"]
    assert project["requires-python"] == f">={oldest_python}"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, and the wheel built from it, as ``python -m build`` makes them."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return out


def only(paths: Iterator[Path]) -> Path:
    (path,) = paths
    return path


@pytest.mark.packaging
def test_wheel_holds_the_package_and_its_data_only(dist: Path) -> None:
    names = set(zipfile.ZipFile(only(dist.glob("*.whl"))).namelist())
    package = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "django_oncejob").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert package - names == set()
    assert {
        "django_oncejob/py.typed",
        "django_oncejob/migrations/0001_initial.py",
        "django_oncejob/locale/zh_Hans/LC_MESSAGES/django.mo",
    } <= names
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"django_oncejob"}


@pytest.mark.packaging
def test_both_carry_the_licence_and_the_sdist_the_docs_and_changelog(dist: Path) -> None:
    wheel = set(zipfile.ZipFile(only(dist.glob("*.whl"))).namelist())
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in wheel)
    with tarfile.open(only(dist.glob("*.tar.gz"))) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "CHANGELOG.md", "docs/index.rst", "docs/conf.py"} <= names
    assert not any(name.startswith("docs/_build") for name in names)


@pytest.mark.packaging
@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_demo_project_runs_on_the_installed_package(kind: str, dist: Path, tmp_path: Path) -> None:
    artifact = only(dist.glob("*.whl" if kind == "wheel" else "*.tar.gz"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # The Django of this test run, so that each nox session checks its own version.
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, str(artifact), f"django=={django.__version__}"], check=True)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    env |= {"DEMO_DB": "sqlite", "DEMO_SQLITE_PATH": str(tmp_path / "demo.sqlite3")}

    def manage(*args: str) -> str:
        done = subprocess.run(
            [python, "manage.py", *args],
            cwd=ROOT / "testproject",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    where = subprocess.run(
        [python, "-c", "import django_oncejob; print(django_oncejob.__file__)"],
        cwd=ROOT / "testproject",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(where.strip()).is_relative_to(venv)
    assert "no issues" in manage("check")
    manage("migrate", "--verbosity=0")
    assert "runs demo.jobs.tick" in manage("runjobs", "--list")

    log = tmp_path / "runjobs.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [python, "manage.py", "runjobs", "--owner", f"packaging-{kind}"],
            cwd=ROOT / "testproject",
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            time.sleep(3)
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=30)
        finally:
            process.kill()
    output = log.read_text()
    assert returncode == 0, output
    assert re.search(r"scheduled \d+ jobs", output)
    assert f"runjobs packaging-{kind}: stopped." in output


def package_imports(package_name: str) -> dict[str, set[str]]:
    """Each module of a package and the package's modules it imports, anywhere in it."""
    package = ROOT / package_name
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in package.rglob("*.py")
        # Not the bench's own virtualenv of peers.
        if not any(part.startswith(".") for part in path.relative_to(package).parts)
    }
    imports: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in modules:
                found = {f"{node.module}.{alias.name}" for alias in node.names} & modules.keys()
                imports[name] |= found or {node.module}
            elif isinstance(node, ast.Import):
                imports[name] |= {alias.name for alias in node.names} & modules.keys()
    return imports


@pytest.mark.parametrize("package", ["django_oncejob", "bench"])
def test_the_package_has_no_import_cycle(package: str) -> None:
    """Counting the imports inside functions: a cycle there is a cycle all the same."""
    imports = package_imports(package)
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(imports[module] - {package}):
            if imported in path:
                cycles.append(path[path.index(imported) :] + [imported])
            else:
                visit(imported, [*path, imported])

    for module in sorted(imports):
        visit(module, [module])
    assert cycles == []
