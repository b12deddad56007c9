"""`tfgpt2 train --strategy multiworker`: two worker processes on loopback ports, as two hosts run it."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from helpers import run_cli

TRAIN = ["--builtin-data", "--n-embd", "32", "--n-layer", "2", "--n-head", "2", "--seq-len", "32",
         "--batch-size", "8"]
DEADLINE = 100  # seconds for both workers of one run


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def train_on_two_workers(outs, *args):
    """`tfgpt2 train ARGS` on a two-worker cluster (worker i writes to outs[i]); both stopped by the deadline."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    script = os.path.join(os.path.dirname(sys.executable), "tfgpt2")
    workers = []
    for index, out in enumerate(outs):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen([script if os.path.exists(script) else "tfgpt2", "train", "--out", str(out),
                                         "--strategy", "multiworker", *TRAIN, *args], env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    end, results = time.monotonic() + DEADLINE, []
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=max(1.0, end - time.monotonic()))
            results.append((worker.returncode, stdout, stderr))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    for code, _, stderr in results:
        assert code == 0, stderr[-2000:]
    return [stdout for _, stdout, _ in results]


def step_losses(out):
    return json.loads((out / "train_history.json").read_text())["step_loss"]


def _train_alone_and_on_two_workers(tmp_path):
    """10 steps in one process (8 rows) and on 2 workers (4 rows each): (losses alone, chief's losses, chief's out)."""
    single = run_cli("train", "--out", str(tmp_path / "single"), *TRAIN, "--steps", "10", "--epochs", "1",
                     timeout=DEADLINE)
    assert single.returncode == 0, single.stderr[-2000:]
    chief_out, worker_out = tmp_path / "cluster", tmp_path / "worker1"
    chief_log, worker_log = train_on_two_workers([chief_out, worker_out], "--steps", "10", "--epochs", "1")
    assert "on 2 replicas" in chief_log and "held-out perplexity" in chief_log and worker_log == ""
    assert not worker_out.exists()  # the chief alone writes
    return step_losses(tmp_path / "single"), step_losses(chief_out), chief_out


def test_two_workers_train_as_one_process(tmp_path):
    """Per-step loss of 2 workers x 4 rows == 1 process x 8 rows; only the chief writes."""
    expected, got, _ = _train_alone_and_on_two_workers(tmp_path)
    print("per-step loss, 1 process:", expected, "\n2 workers:", got)
    assert len(got) == len(expected) == 10 and got[-1] < got[0] - 0.3
    assert max(abs(a - b) for a, b in zip(got, expected)) <= 1e-5


@pytest.mark.slow
def test_two_workers_resume_from_the_chief(tmp_path):
    """An interrupted 2-epoch run: --resume restores the chief's checkpoint (shared storage) on both workers,
    so the resumed epoch starts from the trained weights, not a new model."""
    _, got, chief_out = _train_alone_and_on_two_workers(tmp_path)
    train_on_two_workers([chief_out, chief_out], "--steps", "20", "--epochs", "2", "--resume")
    history = json.loads((chief_out / "train_history.json").read_text())
    resumed = history["step_loss"]
    assert len(resumed) == 10 and history["eval"][-1]["step"] == 20
    assert abs(resumed[0] - got[0]) > 0.5 and resumed[0] < got[-1] + 0.3, (resumed[0], got)


def test_bad_cluster_settings_one_line_exit_2(tmp_path, capsys, monkeypatch):
    """A missing or malformed TF_CONFIG is one line naming the fix, before any TensorFlow work."""
    from helpers import cli

    cases = [(None, "needs TF_CONFIG"), ("{cluster:", "TF_CONFIG is not JSON"),
             ('{"cluster": {"worker": ["a:1", "b:2"]}}', 'needs a "cluster" and a "task"'),
             ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "not in its cluster"),
             ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}', "two or more workers")]
    for value, match in cases:
        if value is None:
            monkeypatch.delenv("TF_CONFIG", raising=False)
        else:
            monkeypatch.setenv("TF_CONFIG", value)
        code, _, err = cli(capsys, "train", "--builtin-data", "--out", tmp_path / "t", "--strategy", "multiworker")
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1, (value, err)
    assert not (tmp_path / "t").exists()
