"""`sam build` through infra/build.sh, on this machine (no Docker, no Python 3.13): the artifacts hold
one shared layer with wheels for CPython 3.13 manylinux x86_64, and functions that are only their
own folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = {
    "contact_sync": "ContactSyncFunction",
    "invoice_push": "InvoicePushFunction",
    "payment_webhook": "PaymentWebhookFunction",
    "reconcile": "ReconcileFunction",
}
LAMBDA_ABI = "cpython-313-x86_64-linux-gnu"

pytestmark = pytest.mark.slow


def _sam() -> str | None:
    beside_python = Path(sys.executable).parent / "sam"
    return str(beside_python) if beside_python.exists() else shutil.which("sam")


def _pypi_reachable(scratch: Path) -> bool:
    """One small wheel for the Lambda platform, the way the layer build fetches its wheels."""
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--platform", "manylinux2014_x86_64", "--implementation", "cp", "--python-version", "3.13",
         "--disable-pip-version-check", "--quiet", "-d", str(scratch), "pyyaml==6.0.4"],
        capture_output=True, text=True, timeout=180, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sam = _sam()
    # Required, not optional: a missing tool or registry fails the test, never skips it.
    assert sam is not None, "the `sam` command (aws-sam-cli, a dev dependency) is not installed"
    assert shutil.which("make") is not None, "`make` is not installed; SAM's makefile build method needs it"
    scratch = tmp_path_factory.mktemp("sam")
    assert _pypi_reachable(scratch / "probe"), "PyPI is unreachable: cannot fetch the CPython 3.13 wheels"
    target = scratch / "build"
    env = {**os.environ, "SAM": sam, "PYTHON": sys.executable, "SAM_CLI_TELEMETRY": "0"}
    started = time.monotonic()
    result = subprocess.run([str(REPO / "infra" / "build.sh"), str(target)], cwd=scratch, env=env,
                            capture_output=True, text=True, timeout=540, check=False)
    elapsed = time.monotonic() - started
    print(f"\nsam build took {elapsed:.1f} s")
    assert result.returncode == 0, f"sam build failed after {elapsed:.0f} s:\n{result.stdout[-4000:]}\n" \
                                   f"{result.stderr[-4000:]}"
    return target


def _files(root: Path) -> list[Path]:
    return [p.relative_to(root) for p in root.rglob("*") if p.is_file()]


def test_built_template_points_each_resource_at_its_artifact(build_dir: Path):
    resources = yaml.load((build_dir / "template.yaml").read_text(), Loader=_CfnLoader)["Resources"]
    assert resources["SharedLayer"]["Properties"]["ContentUri"] == "SharedLayer"
    for logical_id in FUNCTIONS.values():
        assert resources[logical_id]["Properties"]["CodeUri"] == logical_id
        assert (build_dir / logical_id / "app.py").is_file()


def test_layer_holds_the_whole_shared_package_and_nothing_of_ours_besides(build_dir: Path):
    layer = build_dir / "SharedLayer" / "python"
    source = {p for p in _files(REPO / "shared") if "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert source, "shared/ is empty"
    assert set(_files(layer / "shared")) == source
    assert not (layer / "functions").exists()
    assert not (layer / "sugar_xero").exists()


def test_layer_wheels_are_built_for_cpython_313_manylinux_x86_64(build_dir: Path):
    layer = build_dir / "SharedLayer" / "python"
    assert (layer / "pydantic_core" / f"_pydantic_core.{LAMBDA_ABI}.so").is_file()
    assert (layer / "yaml" / f"_yaml.{LAMBDA_ABI}.so").is_file()
    for package in ("aws_lambda_powertools", "aws_xray_sdk", "pydantic", "requests", "boto3", "botocore",
                    "cryptography"):
        assert (layer / package / "__init__.py").is_file(), package
    extensions = [p.name for p in layer.rglob("*.so")]
    wrong = [name for name in extensions if LAMBDA_ABI not in name and ".abi3." not in name]
    assert extensions and not wrong, f"extensions not built for the Lambda runtime: {wrong}"
    for wheel_info in layer.glob("*.dist-info/WHEEL"):
        tags = [line.split(":", 1)[1].strip() for line in wheel_info.read_text().splitlines()
                if line.startswith("Tag:")]
        assert all(t.endswith("-any") or "cp313" in t or "abi3" in t for t in tags), (wheel_info, tags)
        assert all("manylinux" in t or t.endswith("-any") for t in tags), (wheel_info, tags)


@pytest.mark.parametrize("name,logical_id", sorted(FUNCTIONS.items()))
def test_function_artifact_is_only_its_own_folder(build_dir: Path, name: str, logical_id: str):
    artifact = build_dir / logical_id
    expected = {p for p in _files(REPO / "functions" / name) if "__pycache__" not in p.parts
                and p.suffix != ".pyc"}
    assert set(_files(artifact)) == expected
    assert sum((artifact / p).stat().st_size for p in expected) < 200_000


def test_no_artifact_carries_tests_virtualenvs_or_byte_code(build_dir: Path):
    for path in _files(build_dir):
        parts = path.parts
        assert ".venv" not in parts and ".git" not in parts, path
        assert path.name != "conftest.py" and path.suffix != ".pyc", path
        assert "__pycache__" not in parts, path
        # Third-party wheels may ship their own tests; ours must never be packaged.
        assert not (len(parts) > 1 and parts[1] == "tests"), path
        assert not (parts[0] == "SharedLayer" and len(parts) > 2 and parts[2] == "tests"), path
        assert not (parts[0] == "SharedLayer" and len(parts) > 3 and parts[2] == "shared"
                    and parts[3] == "tests"), path


@pytest.mark.parametrize("name,logical_id", sorted(FUNCTIONS.items()))
def test_handler_imports_from_its_artifact_and_the_layer_alone(build_dir: Path, tmp_path: Path,
                                                                name: str, logical_id: str):
    """Lambda's view: the function folder plus /opt/python. The layer's compiled wheels are for 3.13,
    so this interpreter takes third-party packages from its own environment and only `shared`
    from the layer."""
    opt_python = tmp_path / "opt-python"
    opt_python.mkdir()
    (opt_python / "shared").symlink_to(build_dir / "SharedLayer" / "python" / "shared")
    task = build_dir / logical_id
    script = (
        "import sys\n"
        f"sys.path[:0] = [{str(task)!r}, {str(opt_python)!r}]\n"
        "import app, shared\n"
        f"assert app.__file__.startswith({str(task)!r}), app.__file__\n"
        f"assert shared.__file__.startswith({str(opt_python)!r}), shared.__file__\n"
        "assert callable(app.lambda_handler)\n"
        "leaked = sorted(m for m in sys.modules if m == 'functions' or m.startswith('functions.'))\n"
        "assert not leaked, leaked\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"AWS_DEFAULT_REGION": "eu-west-1", "POWERTOOLS_TRACE_DISABLED": "1",
                "POWERTOOLS_SERVICE_NAME": "sugar-xero", "POWERTOOLS_METRICS_NAMESPACE": "SugarXero"})
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-3000:]


class _CfnLoader(yaml.SafeLoader):
    """Reads the built template, whose short-form intrinsics (!Ref, !GetAtt...) plain YAML rejects."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}


_CfnLoader.add_multi_constructor("!", _intrinsic)
