"""Shared fixtures for the Python oracle tests.

The tests drive TensorMesh's binaries (lctl, test tools) built by CMake and
compare them with reference implementations nobody here wrote (Hugging Face
tokenizers, the gguf package, safetensors, jinja2).

TM_BUILD_DIR names the build folder (default: build/release). ../shared/data is
found beside the checkout or through TM_SHARED_DATA; tests that need it skip
loudly when it is absent.
"""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("TM_BUILD_DIR", ROOT / "build" / "release"))


@pytest.fixture(scope="session")
def lctl() -> pathlib.Path:
    p = build_dir() / "lctl"
    if not p.exists():
        pytest.fail(f"{p} not built: run the build first (scripts/test.sh does)")
    return p


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    p = pathlib.Path(os.environ.get("TM_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not p.is_dir():
        pytest.skip(f"SKIPPED: shared data folder {p} is absent")
    return p


@pytest.fixture(scope="session")
def models_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("TM_MODELS_DIR", ROOT / "models"))


def run(args, **kw) -> subprocess.CompletedProcess:
    """Runs a command, capturing bytes; never raises on a non-zero exit."""
    return subprocess.run([str(a) for a in args], capture_output=True, timeout=600, **kw)
