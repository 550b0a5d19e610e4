"""RLlib across the two nodes of the test cluster: env runners on both, a checkpoint that a
new driver restores and trains on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sandbox_rl.enums import TaskType
from sandbox_rl.training.rllib import RLlibConfig, restore, train

pytestmark = pytest.mark.cluster


def test_two_iterations_with_env_runners_on_both_nodes_then_restore(ray_cluster,
                                                                    tmp_path) -> None:
    import ray

    from sandbox_rl.training.ray_runtime import ray_session

    cfg = RLlibConfig(address=ray_cluster.address, users=200, episode_steps=20, timesteps=100,
                      num_env_runners=2, train_batch_size=50, minibatch_size=25, num_epochs=1,
                      eval_seeds=(1000, 1001), eval_steps=4, checkpoint_every=50,
                      progress=False, out=str(tmp_path / "run"))
    result = train(cfg)
    assert result.iterations >= 2 and result.timesteps >= 100
    with ray_session(ray_cluster.address, threads=1):
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(nodes) == 2
        assert sorted(result.placement["env_runners"]) == sorted(nodes)  # one on each node
        assert json.loads((result.out / "placement.json").read_text()) == result.placement

        algo = restore(result.out)
        try:
            saved = {t.value: algo.get_module(t.value).get_state() for t in TaskType}
            algo.train()  # the restored algorithm keeps training on the cluster
            after = {t.value: algo.get_module(t.value).get_state() for t in TaskType}
        finally:
            algo.stop()
    moved = [a for a in saved
             if any(not np.array_equal(np.asarray(saved[a][k]), np.asarray(after[a][k]))
                    for k in saved[a])]
    assert moved, "one more iteration after the restore changed no module's weights"
    scores = json.loads((result.out / "eval.json").read_text())["scores"]
    assert set(scores) == {t.value for t in TaskType}
