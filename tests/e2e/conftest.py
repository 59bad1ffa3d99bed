"""Shared fixtures for the end-to-end tests: they drive the real `corral` binary."""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("CORRAL_BUILD", "build"))
CORRAL = os.path.join(BUILD, "bin", "corral")


def corral(*args, input=None, timeout=120, env=None, pass_fds=(), check=None, text=True):
    """Run `corral ARGS...` and return the CompletedProcess (stdout/stderr captured)."""
    p = subprocess.run([CORRAL, *args], input=input, capture_output=True, timeout=timeout,
                       env=env, pass_fds=pass_fds, text=text)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


def run_result(*args, **kw):
    """`corral run --result FILE ARGS...`: returns (CompletedProcess, result dict or None)."""
    import tempfile
    with tempfile.NamedTemporaryFile("r", suffix=".json") as f:
        p = corral("run", "--result", f.name, *args, **kw)
        data = f.read()
    return p, (json.loads(data) if data.strip() else None)


@pytest.fixture(scope="session")
def corral_bin():
    assert os.access(CORRAL, os.X_OK), f"{CORRAL} is not built: run make"
    return CORRAL
