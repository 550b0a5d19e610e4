"""Suite-wide set-up and the fixtures several folders share."""

import os

import pytest
from ray_cluster import AUTH_VARS, RayCluster

from sandbox_rl.allocator import keep_freed_memory


def pytest_configure(config):
    # As the command line does: decoding on CPU is several times faster when glibc keeps freed
    # memory (sandbox_rl/allocator.py); it changes no result.
    keep_freed_memory()


@pytest.fixture(scope="session")
def ray_cluster():
    """A two-node Ray cluster (``tests/ray_cluster.py``) the test process's driver can join:
    its token is in this process's environment for the session (Ray caches the auth mode,
    so its own test helper refreshes that cache both ways)."""
    pytest.importorskip("ray")
    from ray._private.authentication_test_utils import reset_auth_token_state

    cluster = RayCluster.start()
    saved = {var: os.environ.get(var) for var in AUTH_VARS}
    try:
        for var in AUTH_VARS:
            os.environ.pop(var, None)
        os.environ.update(cluster.env)
        reset_auth_token_state()
        yield cluster
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        reset_auth_token_state()
        cluster.stop()
