"""``spt-train bench``: a trained checkpoint at its learned selection (``--run``), untrained
architectures at given select ratios (``--ratios``, ``--ratios-from``), and their messages.

A checkpoint whose gates select a known set (zero weights, a large bias: every token or none,
per stride) must give that set's MACs, computed independently: the same weights in an SPT built
to keep exactly that set (``selection="given"``), and spa-core's closed form for the containers."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from spa_core import mlp_macs
from spt_models import count_macs, create_model
from spt_models.masks import token_valid
from spt_train.bench import bench
from spt_train.cli import main
from spt_train.config import load_config, to_dict
from spt_train.engine import build_model, make_dataset

TINY = {"embed_dim": 16, "depths": [1, 1, 2, 2], "heads": [1, 2, 4, 8], "drop_path": 0.1}  # conftest's
H, W = 96, 160  # the synthetic frames (conftest.SIZE): stride 16 6 x 10 tokens, stride 32 3 x 5
GRID = {16: (6, 10), 32: (3, 5)}
DIMS = {16: 64, 32: 128}
BLOCKS = {16: 2, 32: 2}  # spt_t12 with depths [1, 1, 2, 2]
L = 49  # window 7


def known_checkpoint(config_path: Path, tmp_path: Path, bias: dict[str, float], name: str) -> Path:
    """The run's model with every gate's weight zeroed and its bias set: ``bias["s0"]`` on the
    stage-2 gate, ``bias[16]`` / ``bias[32]`` on the SPA blocks of that stride (+20: every real
    token, -20: none, through eq. 4's max with the finer scale), saved as a spt-train checkpoint."""
    config = load_config(config_path)
    model = build_model(config, make_dataset(config, "val").num_classes)
    body = model.backbone.body
    with torch.no_grad():
        body.gate.proj.weight.zero_()
        body.gate.proj.bias.fill_(bias["s0"])
        for i, stride in ((5, 16), (7, 32)):  # features.5: stage 3, features.7: stage 4
            for block in body.features[i]:
                block.gate.proj.weight.zero_()
                block.gate.proj.bias.fill_(bias[stride])
    path = tmp_path / f"{name}.pt"
    torch.save({"model": model.state_dict(), "config": to_dict(config)}, path)
    return path


def run_bench(config: Path, checkpoint: Path, out: Path, *extra: str) -> dict:
    args = ["bench", "--run", str(config), "--checkpoint", str(checkpoint), "--images", "2"]
    assert main([*args, "--repeats", "1", "--warmup", "0", "--device", "cpu", *extra, "--out", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("mlp", ["all", "selected"])
def test_a_checkpoint_whose_gates_select_a_known_set_gives_that_sets_macs(write_config, tmp_path, mlp):
    config = write_config("run", model={"backbone": {**TINY, "mlp": mlp}})
    sets = {  # name -> (gate biases, the known selection per stride: every real token or none)
        "none": ({"s0": -20.0, 16: -20.0, 32: -20.0}, {16: False, 32: False}),
        "coarse": ({"s0": -20.0, 16: -20.0, 32: 20.0}, {16: False, 32: True}),
        "all": ({"s0": 20.0, 16: 20.0, 32: 20.0}, {16: True, 32: True}),
    }
    torch.manual_seed(0)
    given = create_model("spt_t12", selection="given", mlp=mlp, **TINY)
    x = torch.rand(1, 3, H, W)
    macs = {}
    for name, (bias, known) in sets.items():
        checkpoint = known_checkpoint(config, tmp_path, bias, name)
        doc = run_bench(config, checkpoint, tmp_path / f"{name}.json")
        row = doc["rows"][0]
        assert row["selection"] == "learned" and row["mlp"] == mlp and row["threshold"] == 0.01
        assert row["select_ratio"] == {f"stride{s}": float(k) for s, k in known.items()}
        assert row["backbone_macs_forward"] == "eval" and row["num_images"] == 2 and row["of_images"] == 4
        assert [p["frame"] for p in row["per_image"]] == ["160x96", "160x96"] and doc["size"] == "160x96"
        assert row["provenance"].startswith(
            f"measured at the learned selection on 2 val images (checkpoint {checkpoint}, config {config})"
        )
        # independently: the same weights in an SPT that keeps exactly the known set
        state = torch.load(checkpoint, weights_only=False)["model"]
        given.load_state_dict(
            {k[len("backbone.body.") :]: v for k, v in state.items() if k.startswith("backbone.body.")}
        )
        keep = {s: torch.full((1, *GRID[s]), known[s]) for s in GRID}
        expected = count_macs(given, x, keep=keep)
        assert (
            row["backbone_macs_g"]
            == row["backbone_macs_g_p10"]
            == row["backbone_macs_g_p90"]
            == expected / 1e9
        )
        assert row["macs_g"] > row["backbone_macs_g"] and row["backbone_fps"] > 0
        macs[name] = expected

    # the closed form: each selected stride adds its blocks' containers (and with mlp="selected" their MLP)
    def added(stride: int) -> int:
        n, C = GRID[stride][0] * GRID[stride][1], DIMS[stride]
        per_block = math.ceil(n / L) * (4 * L * C**2 + 2 * L**2 * C) + (mlp == "selected") * mlp_macs(n, C)
        return BLOCKS[stride] * per_block

    assert macs["coarse"] - macs["none"] == added(32)
    assert macs["all"] - macs["none"] == added(16) + added(32)


def test_a_padded_frame_selects_and_counts_its_real_tokens_only(write_config, tmp_path):
    """Frames of 107x64 (the dataset's resize), padded to 128x64 by the detector as in eval: with
    every gate open the selection is every real token (28 of the 4 x 8 at stride 16, all 2 x 4 at
    stride 32), ratio 1 over real tokens, and the MACs those of exactly that set."""
    path = write_config("pad", model={"backbone": TINY})
    data = yaml.safe_load(path.read_text())
    data["data"].update(short=64, long=107)
    del data["data"]["val"]["labels"]  # labels of the 160x96 frames
    path.write_text(yaml.safe_dump(data))
    checkpoint = known_checkpoint(path, tmp_path, {"s0": 20.0, 16: 20.0, 32: 20.0}, "open")
    row = run_bench(path, checkpoint, tmp_path / "pad.json")["rows"][0]
    assert [(p["frame"], p["input"]) for p in row["per_image"]] == [("107x64", "128x64")] * 2
    assert row["select_ratio"] == {"stride16": 1.0, "stride32": 1.0}
    torch.manual_seed(0)
    given = create_model("spt_t12", selection="given", **TINY)
    state = torch.load(checkpoint, weights_only=False)["model"]
    given.load_state_dict(
        {k[len("backbone.body.") :]: v for k, v in state.items() if k.startswith("backbone.body.")}
    )
    valid = torch.tensor([[64, 107]])
    keep = {s: token_valid(valid, grid, s) for s, grid in {16: (4, 8), 32: (2, 4)}.items()}
    assert [int(k.sum()) for k in keep.values()] == [28, 8]
    expected = count_macs(given, torch.rand(1, 3, 64, 128), keep=keep, valid=valid)
    assert row["backbone_macs_g"] == expected / 1e9


def test_a_dense_swin_checkpoint_benches_as_the_untrained_swin(write_config, tmp_path):
    dims = {k: v for k, v in TINY.items()}
    config = write_config("swin", model={"name": "swin_t", "backbone": dims})
    run = load_config(config)
    model = build_model(run, make_dataset(run, "val").num_classes)
    checkpoint = tmp_path / "swin.pt"
    torch.save({"model": model.state_dict(), "config": to_dict(run)}, checkpoint)
    row = run_bench(config, checkpoint, tmp_path / "swin.json")["rows"][0]
    untrained = bench(["swin_t"], "faster_rcnn", H, W, repeats=0, device="cpu", backbone=dims)["rows"][0]
    assert row["backbone_macs_g"] == row["backbone_macs_g_p90"] == untrained["backbone_macs_g"]
    assert row["backbone_params_m"] == untrained["backbone_params_m"]
    assert row["selection"] == "none" and row["select_ratio"] is None and row["mlp"] is None
    assert row["provenance"].startswith("measured on 2 val images (no selection)")


def test_a_dynamicswin_checkpoint_benches_at_its_eval_selection(write_config, tmp_path):
    """DynamicSwin in eval keeps floor(rho * N) tokens per predictor (0.7, 0.5, 0.3): its cost at the
    learned selection is the eval forward's, whatever the weights."""
    dims = {**TINY, "depths": [1, 1, 4, 1]}
    config = write_config("dyn", model={"name": "dynamicswin_t", "backbone": dims})
    run = load_config(config)
    model = build_model(run, make_dataset(run, "val").num_classes)
    checkpoint = tmp_path / "dyn.pt"
    torch.save({"model": model.state_dict(), "config": to_dict(run)}, checkpoint)
    row = run_bench(config, checkpoint, tmp_path / "dyn.json")["rows"][0]
    expected = count_macs(create_model("dynamicswin_t", **dims), torch.rand(1, 3, H, W))
    assert row["backbone_macs_g"] == expected / 1e9 and row["backbone_macs_forward"] == "eval"
    assert row["selection"] == "learned" and row["select_ratio"] == pytest.approx({"stride16": 0.5}, abs=0.01)
    assert row["mlp"] is None and row["threshold"] is None


def test_ratios_on_an_untrained_spt_give_the_known_set_macs_and_grow_with_the_ratio():
    dims = {**TINY, "window": 3}
    torch.manual_seed(0)
    given = create_model("spt_t12", selection="given", **dims)
    x = torch.randn(1, 3, H, W)
    previous = -1.0
    for ratio in (0.0, 0.2, 0.5, 1.0):
        doc = bench(
            ["spt_t12"],
            "faster_rcnn",
            H,
            W,
            repeats=0,
            device="cpu",
            ratios={16: ratio, 32: ratio},
            backbone=dims,
        )
        row = doc["rows"][0]
        count = {s: math.ceil(ratio * (h * w)) for s, (h, w) in GRID.items()}
        keep = {}
        for s, (h, w) in GRID.items():  # a known set of that many tokens: the first ones in raster order
            flat = torch.zeros(h * w, dtype=torch.bool)
            flat[: count[s]] = True
            keep[s] = flat.view(1, h, w)
        assert row["backbone_macs_g"] == count_macs(given, x, keep=keep) / 1e9
        assert row["backbone_macs_g"] > previous
        previous = row["backbone_macs_g"]
        assert row["selection"] == "ratios" and row["ratios"] == {"stride16": ratio, "stride32": ratio}
        assert row["select_ratio"] == pytest.approx(
            {f"stride{s}": count[s] / (h * w) for s, (h, w) in GRID.items()}
        )
        assert row["provenance"].startswith(
            f"benchmarked at the ratios stride 16 {ratio:.3f}, stride 32 {ratio:.3f} given by --ratios"
        )


def test_ratios_from_a_runs_metrics_and_its_mlp_reading(tmp_path, capsys):
    metrics = tmp_path / "spt_t" / "metrics.json"
    metrics.parent.mkdir()
    selection = {"stride16": {"select_ratio": 0.31, "retention": 0.9}, "stride32": {"select_ratio": 0.45}}
    config = {"out_dir": "runs/demo/spt_t", "model": {"name": "spt_t", "backbone": {"mlp": "selected"}}}
    metrics.write_text(
        json.dumps({"selection": selection, "checkpoint": "runs/demo/spt_t/last.pt", "config": config})
    )
    out = tmp_path / "bench.json"
    args = ["bench", "--models", "spt_t12", "--head", "faster_rcnn", "--size", "64x64", "--repeats", "0"]
    assert main([*args, "--ratios-from", str(metrics), "--out", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    source = f"measured by run runs/demo/spt_t ({metrics}; checkpoint runs/demo/spt_t/last.pt)"
    assert row["ratios"] == {"stride16": 0.31, "stride32": 0.45} and row["ratios_source"] == source
    assert row["mlp"] == "selected"  # the run's reading, unless --mlp says otherwise
    assert row["provenance"] == (
        f"benchmarked at the ratios stride 16 0.310, stride 32 0.450 {source}; untrained architecture "
        "at 64x64, MLP on selected tokens only"
    )
    assert "benchmarked at the ratios stride 16 0.310" in capsys.readouterr().out
    assert main([*args, "--ratios-from", str(metrics), "--mlp", "all", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["rows"][0]["mlp"] == "all"


def test_an_untrained_spt_without_ratios_is_marked(tmp_path):
    row = bench(["spt_t12"], "faster_rcnn", 64, 64, repeats=0, device="cpu", backbone=TINY)["rows"][0]
    assert row["selection"] == "untrained gates" and "do not report" in row["provenance"]


def _error(capsys, args: list[str], tmp_path: Path, usage: bool = False) -> str:
    full = ["bench", *args, "--out", str(tmp_path / "b.json")]
    if usage:  # argparse: usage, then one line
        with pytest.raises(SystemExit) as e:
            main(full)
        assert e.value.code == 2
    else:
        assert main(full) == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_bad_bench_inputs_are_named_in_one_line(tmp_path, capsys, write_config):
    err = _error(capsys, ["--models", "spt_t", "--ratios", "16=1.5,32=0.4"], tmp_path, usage=True)
    assert (
        err
        == "spt-train bench: error: argument --ratios: stride 16: ratio must be a number in [0, 1], got '1.5'"
    )
    err = _error(capsys, ["--models", "spt_t", "--ratios", "16=0.3,32"], tmp_path, usage=True)
    assert err == (
        "spt-train bench: error: argument --ratios: must be STRIDE=RATIO[,STRIDE=RATIO...], "
        "e.g. 16=0.31,32=0.45, got '16=0.3,32'"
    )
    err = _error(capsys, ["--models", "spt_t", "--ratios", "16=0.3,16=0.4"], tmp_path, usage=True)
    assert err == "spt-train bench: error: argument --ratios: stride 16 is given twice in '16=0.3,16=0.4'"
    err = _error(capsys, ["--models", "spt_s", "--ratios", "16=0.3,32=0.4,64=0.5"], tmp_path)
    assert err == "spt-train bench: error: --ratios: unknown stride 64: spt_s selects at strides 16, 32"
    err = _error(capsys, ["--models", "spt_s", "--ratios", "16=0.3"], tmp_path)
    assert err == "spt-train bench: error: --ratios: no ratio for stride 32: spt_s selects at strides 16, 32"
    err = _error(capsys, ["--models", "spt_s", "swin_t", "--ratios", "16=0.3,32=0.4"], tmp_path)
    assert err == (
        "spt-train bench: error: --ratios applies to models that select tokens with SPA gates (SPT); "
        "swin_t does not: bench it in a call without --ratios"
    )
    err = _error(capsys, ["--models", "dynamicswin_t", "--mlp", "selected"], tmp_path)
    assert err == (
        "spt-train bench: error: --mlp applies to models that select tokens with SPA gates (SPT); "
        "dynamicswin_t does not: bench it in a call without --mlp"
    )
    empty = tmp_path / "dense.json"
    empty.write_text(json.dumps({"selection": {}, "bbox": {"AP": 0.3}}))
    err = _error(capsys, ["--models", "spt_s", "--ratios-from", str(empty)], tmp_path)
    assert err == (
        f"spt-train bench: error: --ratios-from {empty}: no selection.stride<S>.select_ratio in it "
        "(the eval metrics of a run whose model selects tokens?)"
    )
    err = _error(
        capsys,
        ["--models", "spt_s", "--ratios", "16=0.3,32=0.4", "--ratios-from", str(empty)],
        tmp_path,
        True,
    )
    assert err == "spt-train bench: error: argument --ratios-from: not allowed with argument --ratios"
    config = write_config("run")
    err = _error(capsys, ["--run", str(config), "--size", "64x64", "--ratios", "16=0.3,32=0.4"], tmp_path)
    assert err == "spt-train bench: error: --size, --ratios only go with --models, not with --run"
    err = _error(capsys, ["--models", "swin_t", "--images", "3"], tmp_path)
    assert err == "spt-train bench: error: --images only goes with --run, not with --models"
    err = _error(capsys, ["--run", str(config)], tmp_path)
    assert (
        err
        == f"spt-train bench: error: {tmp_path / 'run' / 'last.pt'}: no checkpoint (train first, or give --checkpoint)"
    )
    err = _error(capsys, [], tmp_path, usage=True)
    assert err == "spt-train bench: error: one of the arguments --models --run is required"
