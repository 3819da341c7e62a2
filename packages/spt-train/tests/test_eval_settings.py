"""``spt-train eval --set``: a trained checkpoint evaluated at another inference setting (threshold,
tau: keys that leave every weight's shape alone), recorded in the metrics; keys that change the
weights refused, naming the key."""

import json

import pytest

from spt_train.cli import main
from spt_train.config import load_config
from spt_train.engine import fit


@pytest.fixture
def trained(write_config):
    """A tiny SPT detector trained 1 epoch (4 steps): (its config, its checkpoint)."""
    path = write_config("run", epochs=1)
    return path, fit(load_config(path))


def test_eval_at_another_threshold_is_recorded_and_selects_less(trained, tmp_path):
    path, checkpoint = trained
    ratios = {}
    for threshold in (0.01, 0.6):  # the trained setting (the default), then another
        out = tmp_path / f"t{threshold}.json"
        args = ["eval", str(path), "--checkpoint", str(checkpoint), "--out", str(out)]
        assert (
            main(args if threshold == 0.01 else [*args, "--set", f"model.backbone.threshold={threshold}"])
            == 0
        )
        metrics = json.loads(out.read_text())
        ratios[threshold] = metrics["select_ratio"]
        assert metrics["evaluated_at"] == ({} if threshold == 0.01 else {"model.backbone.threshold": 0.6})
    assert ratios[0.6] < ratios[0.01]


def test_eval_refuses_a_setting_that_changes_the_weights(trained, tmp_path, capsys):
    path, checkpoint = trained
    args = ["eval", str(path), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.json")]
    assert main([*args, "--set", "model.backbone.embed_dim=8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"spt-train eval: error: {checkpoint}: checkpoint of another model: model.backbone.embed_dim differs "
        "from the config and changes the weights ("
    )
    assert err.count("\n") == 1 and "of another shape" in err
