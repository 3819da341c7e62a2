"""Broken inputs and faults of a run, each with its exact one-line message: damaged checkpoints,
files that are not checkpoints, outputs that cannot be written, a second fit on a busy out_dir,
and a stop at ``max_steps`` in the middle of an epoch (resumed without skipping data)."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from spt_train.checkpoint import RunError, RunLock
from spt_train.cli import main
from spt_train.config import load_config
from spt_train.engine import fit


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.fixture
def trained(write_config):
    """A run config and its out_dir after 1 epoch (epoch_1.pt and last.pt written)."""
    path = write_config("run")
    fit(load_config(path), stop_after=4)
    return path, path.parent / "run"


def test_a_truncated_last_pt_names_the_intact_epoch_checkpoint(trained, capsys):
    path, out = trained
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError) as err:
        fit(load_config(path))
    assert str(err.value) == (
        f"{out / 'last.pt'}: not a readable torch file (truncated or corrupt: PytorchStreamReader failed "
        f"reading zip archive: failed finding central directory); {out / 'epoch_1.pt'} is intact: resume "
        f"from it with `cp {out / 'epoch_1.pt'} {out / 'last.pt'}`, or start over with --no-resume"
    )
    assert main(["fit", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"spt-train fit: error: {out / 'last.pt'}: not a readable")


def test_an_empty_or_foreign_last_pt_is_named(trained):
    path, out = trained
    (out / "epoch_1.pt").write_bytes(b"")  # no intact epoch either
    (out / "last.pt").write_bytes(b"")
    with pytest.raises(RunError) as err:
        fit(load_config(path))
    assert str(err.value) == (
        f"{out / 'last.pt'}: empty file (0 bytes), not a checkpoint; no intact epoch_N.pt beside it: start "
        f"over with --no-resume (or delete {out})"
    )
    torch.save({"config": {}, "weights": torch.zeros(2)}, out / "last.pt")
    with pytest.raises(RunError, match=r"last.pt: not a spt-train checkpoint: a dict with keys \['config', "):
        fit(load_config(path))
    assert fit(load_config(path), resume=False).exists()  # --no-resume starts over


def test_eval_of_a_file_that_is_not_a_checkpoint_says_what_it_is(trained, tmp_path, capsys):
    path, out = trained
    state_dict = tmp_path / "swin.pth"
    torch.save({"features.0.0.weight": torch.zeros(2), "head.bias": torch.zeros(2)}, state_dict)
    args = ["eval", str(path), "--checkpoint", str(state_dict), "--out", str(tmp_path / "m.json")]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"spt-train eval: error: {state_dict}: not a spt-train checkpoint: a state dict of 2 tensors "
        "(first key 'features.0.0.weight'), no 'model' entry\n"
    )
    other = torch.load(out / "last.pt", weights_only=False)
    other["model"] = {("x." + k if k.startswith("roi_heads") else k): v for k, v in other["model"].items()}
    first = next(iter(other["model"]))
    other["model"][first] = torch.zeros(1)
    torch.save(other, tmp_path / "other.pt")
    args[3] = str(tmp_path / "other.pt")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"spt-train eval: error: {tmp_path / 'other.pt'}: weights of another model than the config builds: "
        "8 missing (first 'roi_heads.box_head.fc6.weight'), 8 unexpected (first 'x.roi_heads.box_head."
        f"fc6.weight'), 1 of another shape (first {first!r}: [1] in the file, "
    )
    assert err.count("\n") == 1


def test_outputs_that_cannot_be_written_stop_before_any_work(trained, tmp_path, capsys, monkeypatch):
    path, _ = trained
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SystemExit, match="2"):  # a usage error, before the split is predicted
        main(["eval", str(path), "--out", str(blocker / "m.json")])
    assert capsys.readouterr().err.endswith(
        f"spt-train eval: error: argument --out: cannot write {blocker / 'm.json'}: {blocker} is a file, not a folder\n"
    )
    assert main(["fit", str(path), "--set", f"out_dir={blocker / 'run'}"]) == 2
    assert capsys.readouterr().err == (
        f"spt-train fit: error: cannot write out_dir {blocker / 'run'}: {blocker} is a file, not a folder\n"
    )

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refuse)  # a read-only folder (chmod does not stop root)
    with pytest.raises(SystemExit, match="2"):
        main(["eval", str(path), "--out", str(tmp_path / "m.json")])
    assert capsys.readouterr().err.endswith(
        f"spt-train eval: error: argument --out: cannot write {tmp_path / 'm.json'}: folder {tmp_path} is not "
        "writable (Permission denied)\n"
    )


def test_a_second_fit_on_a_busy_out_dir_stops_naming_the_first(write_config, caplog):
    path = write_config("busy")
    out = path.parent / "busy"
    out.mkdir()
    host = os.uname().nodename
    (out / ".lock").write_text(f"{os.getpid()} {host}\n")  # this process: alive
    with pytest.raises(RunError) as err:
        fit(load_config(path))
    assert str(err.value) == (
        f"{out}: another fit is running there (pid {os.getpid()} on {host}, lock {out / '.lock'}); wait for "
        "it, train in another out_dir, or delete the lock if that process is gone"
    )
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (out / ".lock").write_text(f"{ended.stdout.strip()} {host}\n")  # a process that has ended
    assert fit(load_config(path), stop_after=4).exists()  # epoch 1 written
    assert f"removing the lock of pid {ended.stdout.strip()}, which has ended" in caplog.text
    assert not (out / ".lock").exists()  # released at the end


def test_the_lock_is_released_when_fit_fails(tmp_path):
    lock = RunLock(tmp_path)
    with pytest.raises(ZeroDivisionError), lock:
        assert (tmp_path / ".lock").read_text().split()[0] == str(os.getpid())
        raise ZeroDivisionError
    assert not (tmp_path / ".lock").exists()


def test_a_stop_at_max_steps_mid_epoch_resumes_at_the_next_batch(write_config):
    """2 epochs x 4 steps; a constant lr after warm-up (no milestone inside the run), so the schedule
    does not depend on max_steps: 6 steps, then a resume to 8 == 8 steps straight."""
    schedule = {"schedule": "step", "milestones": [1.0]}
    straight = fit(load_config(write_config("straight", max_steps=8, **schedule)))
    path = write_config("longer", max_steps=6, **schedule)
    fit(load_config(path))
    last = torch.load(path.parent / "longer" / "last.pt", weights_only=False)
    assert (last["epoch"], last["batch"], last["step"]) == (1, 2, 6)  # mid-epoch 2, not "epoch 2 done"
    data = yaml.safe_load(path.read_text())
    data["train"]["max_steps"] = 8
    path.write_text(yaml.safe_dump(data))
    resumed = fit(load_config(path))
    assert torch.load(resumed, weights_only=False)["step"] == 8
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (path.parent / "longer" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, 9))
