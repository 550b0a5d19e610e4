"""Suite-wide set-up."""

from sandbox_rl.allocator import keep_freed_memory


def pytest_configure(config):
    # As the command line does: decoding on CPU is several times faster when glibc keeps freed
    # memory (sandbox_rl/allocator.py); it changes no result.
    keep_freed_memory()
