"""Sessions: ``tests`` (every package, one venv), ``pipeline`` (the Snakemake pipeline: by default
the demo's Table 2), ``smoke`` (every paper target on a CPU: workflows/config/paper-smoke.yaml),
``spa_core_standalone`` (spa-core with torch only), ``bench`` (the spa-core benchmark), ``lint``."""

from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
PIPELINE = ["snakemake==9.27.1", "matplotlib==3.11.2", "pygments==2.21.0"]  # pipeline, figures, --report
ROOT = Path(__file__).parent
PACKAGES = sorted(
    p.relative_to(ROOT) for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists()
)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """All packages editable with their test extras in one venv; pytest over all of them."""
    session.install(*TORCH, *PIPELINE)
    session.install(*(arg for p in PACKAGES for arg in ("-e", f"{p}[test]")))
    session.run("pytest", *(str(p / "tests") for p in PACKAGES), *session.posargs)


@nox.session(python=PYTHON)
def pipeline(session: nox.Session) -> None:
    """``snakemake ARGS`` (default ``results/table2.csv --cores 8``, the demo profile) in a venv with
    every package; ``nox -s pipeline -- --configfile workflows/config/paper.yaml ...`` for others."""
    session.install(*TORCH, *PIPELINE)
    session.install(*(arg for p in PACKAGES for arg in ("-e", str(p))))
    session.run("snakemake", *(session.posargs or ["results/table2.csv", "--cores", "8"]))


@nox.session(python=PYTHON)
def smoke(session: nox.Session) -> None:
    """Every paper target for real on a CPU: paper.yaml through workflows/config/paper-smoke.yaml."""
    session.install(*TORCH, *PIPELINE)
    session.install(*(arg for p in PACKAGES for arg in ("-e", str(p))))
    session.run(
        "snakemake",
        *("--configfile", "workflows/config/paper-smoke.yaml", "--replace-workflow-config"),
        *(session.posargs or ["--cores", "2"]),
    )


@nox.session(python=PYTHON)
def spa_core_standalone(session: nox.Session) -> None:
    """A fresh venv with only ``pip install packages/spa-core`` (torch alone) and pytest."""
    session.install("torch==2.14.1")
    session.install("./packages/spa-core", "pytest")
    session.run("pytest", "packages/spa-core/tests", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Select-and-pack attention vs Swin W-MSA vs padding to the batch max; table + JSON."""
    session.install(*TORCH)  # torchvision: the Swin block baseline
    session.install("-e", "./packages/spa-core")
    session.run("python", "packages/spa-core/benchmarks/bench_spa.py", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
