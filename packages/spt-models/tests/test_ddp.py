"""Background-only batches: every SPA block selects nothing, yet every parameter gets a (zero)
gradient, so DDP with find_unused_parameters=False keeps working (2 gloo processes on CPU)."""

import subprocess
import sys
import textwrap

import torch

from spa_core import Gate, SPABlock
from spt_models import create_detector

TINY = {"embed_dim": 16, "depths": (1, 1, 2, 2), "heads": (1, 2, 4, 8), "drop_path": 0.0}
FEW_ROIS = {"rpn_post_nms_top_n_train": 32, "box_batch_size_per_image": 16}


def closed_gates(model: torch.nn.Module) -> torch.nn.Module:
    """Every gate at logit -40: sigmoid ~ 4e-18, far below the 0.01 threshold even with noise."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, Gate):
                m.proj.weight.zero_()
                m.proj.bias.fill_(-40.0)
    return model


def background_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, 128, 160, generator=g), torch.rand(3, 96, 128, generator=g)]
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)} for _ in images]
    return images, targets


def test_empty_selection_train_step_leaves_no_parameter_without_a_gradient():
    torch.manual_seed(0)
    model = closed_gates(
        create_detector("spt_t12", "faster_rcnn", 3, backbone_kwargs=TINY, **FEW_ROIS)
    ).train()
    kept = []
    for m in model.modules():
        if isinstance(m, SPABlock):
            m.register_forward_hook(lambda mod, args, out: kept.append(int(out[1].keep.sum())))
    images, targets = background_batch()
    losses = model(images, targets, generator=torch.Generator().manual_seed(0))
    sum(losses.values()).backward()
    assert kept and set(kept) == {0}  # every SPA block selected nothing
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing[:8]


DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch.nn.parallel import DistributedDataParallel as DDP
    from spa_core import Gate
    from spt_models import create_detector

    def worker(rank, port):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=2)
        torch.manual_seed(0)
        model = create_detector("spt_t12", "faster_rcnn", 3, backbone_kwargs={TINY!r}, **{FEW_ROIS!r}).train()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, Gate):
                    m.proj.weight.zero_()
                    m.proj.bias.fill_(-40.0)
        ddp = DDP(model, find_unused_parameters=False)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
        g = torch.Generator().manual_seed(rank)
        for step in range(2):  # DDP reports unused parameters at the start of the next step
            images = [torch.rand(3, 128, 160, generator=g), torch.rand(3, 96, 128, generator=g)]
            targets = [dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long)) for _ in images]
            losses = ddp(images, targets)
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
        dist.destroy_process_group()
        if rank == 0:
            print("DDP OK")

    if __name__ == "__main__":
        mp.spawn(worker, args=(int(sys.argv[1]),), nprocs=2)
    """
).format(TINY=TINY, FEW_ROIS=FEW_ROIS)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_step_on_a_batch_that_selects_nothing(tmp_path):
    script = tmp_path / "ddp_empty.py"
    script.write_text(DDP_SCRIPT)
    run = subprocess.run(
        [sys.executable, str(script), str(free_port())], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "DDP OK" in run.stdout
