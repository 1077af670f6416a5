"""Multi-node training on a real Ray cluster: two raylets on this machine (a head and a worker, each declaring
its own CPUs and one stand-in GPU), joined by ``DEVICE=cpu NNODES=2 RAY_ADDRESS=... scripts/run_grpo.sh``.

One training worker lands on each node and FSDP shards the tiny model over gloo across them; the checkpoint
holds both ranks' shards and merges into one Hugging Face model. The cluster is stopped by the process-group ids
the test started, also when the test fails. Marked ``e2e`` (minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cpu_environment import cpu_environment, require_cpu_stack
from ray_cluster import ray_cluster

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = int(os.environ.get("VERL_CPU_RUN_TIMEOUT", "1500"))


def _actor_nodes(address: str) -> dict[str, list[str]]:
    """Class name -> node ids of every actor the cluster ran (dead ones included: the run has ended)."""
    script = (
        "import json, sys, ray; from ray._private import state; ray.init(address=sys.argv[1], logging_level='ERROR');"
        "print(json.dumps([[a['ActorClassName'], a['Address']['NodeID']] for a in state.actors().values()]))"
    )
    done = subprocess.run([sys.executable, "-c", script, address], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    placed: dict[str, list[str]] = {}
    for name, node in json.loads(done.stdout.strip().splitlines()[-1]):
        placed.setdefault(name, []).append(node)
    return placed


def test_two_node_cluster_trains_with_a_worker_on_each_node_and_the_checkpoint_merges(
    format_tiny_model_dir: Path, tmp_path: Path
) -> None:
    require_cpu_stack()
    env = cpu_environment()
    save_dir = tmp_path / "checkpoints"
    metrics = tmp_path / "metrics.jsonl"
    with ray_cluster(tmp_path / "ray", nodes=2, cpus_per_node=16, gpus_per_node=1, env=env) as cluster:
        run_env = {
            **env,
            "DEVICE": "cpu",
            "NNODES": "2",
            "N_GPUS_PER_NODE": "1",
            "RAY_ADDRESS": cluster.address,
            "MODEL_PATH": str(format_tiny_model_dir),
            "DATA_DIR": str(tmp_path / "data"),
            "SAVE_DIR": str(save_dir),
            "VERL_FILE_LOGGER_PATH": str(metrics),
            "RUN_TIMEOUT": str(RUN_TIMEOUT_S),
            "PYTHON": sys.executable,
        }
        log = tmp_path / "train.log"
        with log.open("w") as out:
            done = subprocess.run(
                [
                    "bash",
                    str(REPO / "scripts" / "run_grpo.sh"),
                    "rotation",
                    "demo",
                    "trainer.total_training_steps=2",
                    "trainer.save_freq=2",
                    "trainer.test_freq=-1",
                    "trainer.val_before_train=false",
                ],
                env=run_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT_S + 120,
                cwd=tmp_path,
            )
        text = log.read_text(errors="replace")
        assert done.returncode == 0, text[-6000:]
        nodes = cluster.node_ids()
        placed = _actor_nodes(cluster.address)
    assert "joining the Ray cluster at 127.0.0.1" in text  # the CPU config's local num_cpus/num_gpus cleared
    workers = {name: ids for name, ids in placed.items() if "WorkerDict" in name}
    assert workers, f"no training worker among the actors: {sorted(placed)}"
    worker_nodes = [node for ids in workers.values() for node in ids]
    assert sorted(nodes[node] for node in worker_nodes) == ["cluster_node_0", "cluster_node_1"], placed

    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [1, 2]
    actor = save_dir / "global_step_2" / "actor"
    for rank in (0, 1):  # FSDP over both nodes: one shard per rank
        assert (actor / f"model_world_size_2_rank_{rank}.pt").is_file()
        assert (actor / f"optim_world_size_2_rank_{rank}.pt").is_file()
    merged = tmp_path / "merged"
    merge = subprocess.run(
        ["bash", str(REPO / "scripts" / "merge_models.sh"), str(actor), str(merged)],
        env={**env, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert merge.returncode == 0, (merge.stdout + merge.stderr)[-4000:]
    assert (merged / "config.json").is_file() and list(merged.glob("*.safetensors"))
