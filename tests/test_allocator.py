"""``keep_freed_memory`` sets glibc's thresholds where glibc is the C library."""

import platform
import subprocess
import sys

import pytest

from sandbox_rl import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_keep_freed_memory_sets_the_thresholds_on_glibc():
    assert allocator.keep_freed_memory() is True


def test_importing_the_package_changes_no_allocator_setting():
    # Only callers change the process's allocator: a call at import would raise here.
    code = ("import sandbox_rl.allocator as a\n"
            "def refuse():\n"
            "    raise AssertionError('keep_freed_memory called at import')\n"
            "a.keep_freed_memory = refuse\n"
            "import sandbox_rl, sandbox_rl.envs, sandbox_rl.cli\n"
            "import sandbox_rl.core.self_evolving_oasis\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_elsewhere_it_reports_that_nothing_was_set(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False
    monkeypatch.setattr(allocator.sys, "platform", "linux")

    def no_library(*args, **kwargs):
        raise OSError("no C library")

    monkeypatch.setattr(allocator.ctypes, "CDLL", no_library)
    assert allocator.keep_freed_memory() is False
