"""verl_ext.cpu.pause_points: a process stops at the n-th arrival at a point, says so, and waits to be killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from verl_ext.cpu import pause_points

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("value", ["update_actor", "update_actor:0", "nowhere:1", "checkpoint:x"])
def test_a_malformed_request_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(pause_points.PAUSE_AT, value)
    with pytest.raises(ValueError, match="use <point>:<n>"):
        pause_points.requested()


def test_nothing_is_asked_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pause_points.PAUSE_AT, raising=False)
    assert pause_points.requested() is None


def _run_until_paused(script: str, pause_file: Path) -> tuple[str, str]:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", pause_points.PAUSE_FILE: str(pause_file)},
    )
    try:
        for _ in range(600):
            if pause_file.exists() or child.poll() is not None:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the process ended instead of pausing"
        assert pause_file.read_text().split() == [str(child.pid), pause_file.stem]
    finally:
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
    return out, pause_file.read_text()


def test_update_actor_pauses_at_the_nth_call_with_verls_method_attributes_kept(tmp_path: Path) -> None:
    script = """
        import types
        from verl_ext.cpu import pause_points
        class ActorRolloutRefWorker:
            def update_actor(self, data):
                print("update", data, flush=True)
        ActorRolloutRefWorker.update_actor.dispatch_mode = "nd"  # as verl's @register leaves it
        module = types.SimpleNamespace(ActorRolloutRefWorker=ActorRolloutRefWorker)
        pause_points.install_update_actor(module, 2)
        print("kept", ActorRolloutRefWorker.update_actor.dispatch_mode, flush=True)
        worker = ActorRolloutRefWorker()
        worker.update_actor(1)
        worker.update_actor(2)
        print("not reached", flush=True)
    """
    out, _ = _run_until_paused(script, tmp_path / "update_actor")
    assert out.split("\n")[:2] == ["kept nd", "update 1"] and "not reached" not in out


def test_checkpoint_pauses_after_the_first_file_of_the_nth_save(tmp_path: Path) -> None:
    script = f"""
        import types, torch
        from verl_ext.cpu import pause_points
        class FSDPCheckpointManager:
            def save_checkpoint(self, local_path):
                for name in ("model", "optim", "extra_state"):
                    torch.save({{"x": 1}}, f"{{local_path}}/{{name}}.pt")
        pause_points.install_checkpoint(types.SimpleNamespace(FSDPCheckpointManager=FSDPCheckpointManager), 2)
        manager = FSDPCheckpointManager()
        manager.save_checkpoint({str(tmp_path / "one")!r})
        manager.save_checkpoint({str(tmp_path / "two")!r})
    """
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    _run_until_paused(script, tmp_path / "checkpoint")
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["extra_state.pt", "model.pt", "optim.pt"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["model.pt"]
