"""stratus.openai_sdk: a request through the openai SDK never sees a half-imported legacy `httpx` (spaCy
imports it on first use of the PII rail, in another thread)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

# Thread A imports `httpx` slowly (a finder delays its module body); thread B, once A is inside that import,
# does what a request does: (through stratus, import the SDK's module) then normalise a timeout, which reads
# sys.modules["httpx"]. The SDK is imported before the race starts, so only the import lock decides it.
_RACE = textwrap.dedent("""
    import importlib.abc, importlib.util, sys, threading, time
    started = threading.Event()

    class SlowHttpx(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "httpx":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec("httpx")
            real_exec = spec.loader.exec_module
            def exec_module(module):
                started.set()
                time.sleep(0.5)
                real_exec(module)
            spec.loader.exec_module = exec_module
            return spec

    import openai  # the SDK itself does not import legacy httpx
    from openai._httpx2 import normalize_httpx_timeout

    sys.meta_path.insert(0, SlowHttpx())
    threading.Thread(target=lambda: __import__("httpx"), daemon=True).start()
    started.wait(5)
    if sys.argv[1] == "stratus":
        from stratus.openai_sdk import openai  # waits for the import in progress
    normalize_httpx_timeout(5.0)
    print("ok")
""")


def _race(via: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _RACE, via], capture_output=True, text=True, timeout=60)


def test_the_sdk_imported_through_stratus_waits_for_a_legacy_httpx_import_in_progress() -> None:
    result = _race("stratus")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_bare_sdk_breaks_on_a_half_imported_httpx() -> None:
    """The failure the module exists for (if the SDK stops reading sys.modules, this test tells us)."""
    result = _race("bare")
    assert result.returncode != 0
    assert "partially initialized module 'httpx'" in result.stderr
