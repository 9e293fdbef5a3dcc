"""Draws the documentation site's benchmark figures from the stored results.

Reads ``benchmarks/results/`` (the files the benchmark scripts wrote) and,
for the optimization proxy, whose runs keep no file there, the table of
``BENCHMARKS.md``; writes PNG figures and a Markdown table into
``docs/assets/benchmarks/`` (or ``--out``). ``make docs`` runs it before
``mkdocs build``. Nothing here measures anything: every number comes from
those files.

    python scripts/docs_benchmark_plots.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
OUT = ROOT / "docs" / "assets" / "benchmarks"

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}

# Box treatments of the toy experiment (box_scaling*.txt), in the order shown, with a label each.
TREATMENTS = [
    ("box_scaling.txt", "global", "global (the paper)"),
    ("box_scaling.txt", "per_block", "per_block"),
    ("box_scaling.txt", "clip_blend", "clip_blend"),
    ("box_scaling.txt", "clip_scale", "clip_scale"),
    ("box_scaling.txt", "mix", "mix"),
    ("box_scaling_project_relu.txt", "project_ift", 'project, nonneg="relu"'),
    ("box_scaling_scaled_project.txt", "scaled_project", 'scaled_rows="all", project'),
    ("toy_default_seed0.txt", "default", "default (auto: every row\nscaled and projected)"),
    ("box_scaling.txt", "dense+osqp", "Dense, then OSQP\n(not exact in training)"),
]


def seconds(value: str, unit: str) -> float:
    return float(value) * UNITS[unit]


def read_box_scaling(name: str) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(arch, variant) -> (ratio after 10 epochs, after 30, worst relative violation)."""
    rows = {}
    for line in (RESULTS / name).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0] in ("mlp", "skip"):
            arch, variant, early, final, violation, _ = parts
            rows.setdefault((arch, variant), (float(early), float(final), float(violation)))
    return rows


def read_layer_vs_dense() -> list[dict]:
    """Rows of layer_cpu.txt: case, k, batch, mode, dense and layer seconds."""
    pattern = re.compile(
        r"^(?P<case>\w+ \d+)\s+(?P<k>\d+)\s+(?P<batch>\d+)\s+(?P<mode>(?:train )?\w+)\s+"
        r"(?P<dense>[\d.]+) (?P<du>us|ms|s)\s+(?P<layer>[\d.]+) (?P<lu>us|ms|s)\s+[\d.]+x$"
    )
    rows = []
    for line in (RESULTS / "layer_cpu.txt").read_text(encoding="utf-8").splitlines():
        match = pattern.match(line.strip())
        if match:
            rows.append(
                {
                    "case": match["case"],
                    "k": int(match["k"]),
                    "batch": int(match["batch"]),
                    "mode": match["mode"],
                    "dense": seconds(match["dense"], match["du"]),
                    "layer": seconds(match["layer"], match["lu"]),
                }
            )
    return rows


def read_inference() -> list[dict]:
    """Rows of inference_cpu.txt: k, batch and the seconds per batch of each method."""
    time = r"([\d.]+) (us|ms|s)"
    pattern = re.compile(rf"^\s*(\d+)\s+(\d+)\s+{time}\s+{time}\s+{time}\s+{time}\s+{time}\s+{time}\s")
    rows = []
    for line in (RESULTS / "inference_cpu.txt").read_text(encoding="utf-8").splitlines():
        match = pattern.match(line)
        if match:
            g = match.groups()
            t = [seconds(g[i], g[i + 1]) for i in range(2, 14, 2)]
            rows.append(
                {
                    "k": int(g[0]),
                    "batch": int(g[1]),
                    "dense": t[0],
                    "layer": min(t[1], t[2]),
                    "osqp": t[3],
                    "admm": min(t[4], t[5]),
                }
            )
    return rows


def proxy_table() -> tuple[list[str], list[list[str]]]:
    """The per-run table of BENCHMARKS.md's "Optimization proxy" section: header and rows."""
    text = BENCHMARKS_MD.read_text(encoding="utf-8")
    section = text[text.index("## Optimization proxy") :]
    lines = [line for line in section.splitlines() if line.startswith("| options |")]
    if not lines:
        raise SystemExit("BENCHMARKS.md: the proxy table ('| options | RS mean | ...') was not found")
    start = section.index(lines[0])
    table = []
    for line in section[start:].splitlines():
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    return table[0], table[2:]


def _save(plt, fig, path: Path) -> Path:
    """Lays out, writes (150 dpi) and closes ``fig``; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_quality(plt, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5.2))
    labels, mlp, skip = [], [], []
    for name, variant, label in TREATMENTS:
        rows = read_box_scaling(name)
        labels.append(label)
        mlp.append(rows.get(("mlp", variant), (None, float("nan")))[1])
        skip.append(rows.get(("skip", variant), (None, float("nan")))[1])
    y = range(len(labels))
    ax.barh([i + 0.2 for i in y], mlp, height=0.4, label="MLP", color="#3f51b5")
    ax.barh([i - 0.2 for i in y], skip, height=0.4, label="MLP + skip connection", color="#ff9800")
    for i, (m, s) in enumerate(zip(mlp, skip, strict=True)):
        for value, offset in ((m, 0.2), (s, -0.2)):
            if value == value:  # not NaN
                ax.text(value + 0.003, i + offset, f"{value:.3f}", va="center", fontsize=8)
    ax.set_yticks(list(y), labels, fontsize=9)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xlim(1.0, max(v for v in mlp + skip if v == v) * 1.06)
    ax.set_xlabel("test MSE / optimal projection's (1 = the optimum)")
    ax.set_title("Learn the projection onto the checkerboard + box\n(Fashion-MNIST, 30 epochs, seed 0)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    return _save(plt, fig, out / "quality.png")


def plot_vae_quality(plt, out: Path) -> Path:
    names, ratios = [], []
    for scaling in ("global", "per_block", "mix"):
        metrics = json.loads((RESULTS / "vae_scaling" / f"{scaling}-metrics.json").read_text(encoding="utf-8"))
        names.append(scaling)
        ratios.append(metrics["reconstruction_ratio_vs_projected_twin"])
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.bar(names, ratios, color="#009688", width=0.6)
    for i, value in enumerate(ratios):
        ax.text(i, value + 0.001, f"{value:.3f}", ha="center", fontsize=9)
    ax.axhline(1.0, color="black", lw=1)
    ax.set_ylim(0.99, max(ratios) * 1.01)
    ax.set_xlabel("the output layer's scaling")
    ax.set_ylabel("test MSE / projected twin's")
    ax.set_title("Constrained VAE vs its twin projected to be feasible\n(Fashion-MNIST, 12 epochs)", fontsize=10)
    return _save(plt, fig, out / "vae_quality.png")


def plot_layer_vs_dense(plt, out: Path) -> Path:
    rows = read_layer_vs_dense()
    groups = [
        ("checkerboard 784", 784),
        ("checkerboard 784", 128),
        ("chain 512", 512),
        ("chain 512", 128),
    ]
    settings = [(1, "xla"), (256, "xla"), (4096, "xla"), (256, "train xla")]
    fig, ax = plt.subplots(figsize=(8, 4.6))
    width = 0.2
    colors = ["#90caf9", "#42a5f5", "#1565c0", "#ef6c00"]
    for j, (batch, mode) in enumerate(settings):
        values = []
        for case, k in groups:
            match = [r for r in rows if r["case"] == case and r["k"] == k and r["batch"] == batch and r["mode"] == mode]
            values.append(match[0]["layer"] / match[0]["dense"] if match else float("nan"))
        xs = [i + (j - 1.5) * width for i in range(len(groups))]
        label = f"{'training step' if mode.startswith('train') else 'inference'}, batch {batch}"
        ax.bar(xs, values, width, label=label, color=colors[j])
        for x, v in zip(xs, values, strict=True):
            if v == v:
                ax.text(x, v + 0.03, f"{v:.2f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(groups)), [f"{case}\nk = {k} inputs" for case, k in groups], fontsize=9)
    ax.axhline(1.0, color="black", lw=1)
    ax.axhline(1.3, color="grey", lw=1, ls="--", label="target, inference (1.3x)")
    ax.axhline(1.6, color="grey", lw=1, ls=":", label="target, training (1.6x)")
    ax.set_ylabel("layer time / Dense time")
    ax.set_title("Layer vs a Dense of the same shape\n(TensorFlow, XLA, CPU, 2 cores)", fontsize=10)
    ax.set_ylim(0, max(ax.get_ylim()[1], 3.6))
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    return _save(plt, fig, out / "speed_vs_dense.png")


def plot_vs_osqp(plt, out: Path) -> Path:
    rows = read_inference()
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.8), sharey=True)
    styles = {
        "dense": ("Dense alone (infeasible)", "#9e9e9e", "o"),
        "layer": ("constraint layer (exact)", "#3f51b5", "s"),
        "admm": ("Dense + batched ADMM projection", "#ff9800", "^"),
        "osqp": ("Dense + OSQP per sample", "#e53935", "v"),
    }
    for ax, k in zip(axes, (784, 128), strict=True):
        sel = sorted((r for r in rows if r["k"] == k), key=lambda r: r["batch"])
        batches = [r["batch"] for r in sel]
        for key, (label, color, marker) in styles.items():
            ax.plot(batches, [r[key] for r in sel], marker=marker, color=color, label=label)
        for r in sel:
            ax.annotate(
                f"{r['osqp'] / r['layer']:.0f}x",
                (r["batch"], r["osqp"]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
                color="#e53935",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.margins(y=0.15)
        ax.set_xlabel("batch size")
        ax.set_title(f"k = {k} input features", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("seconds per batch")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncol=2, loc="lower center")
    fig.suptitle(
        "Feasible outputs: layer vs project-at-test-time\n"
        "(checkerboard + box, 784 outputs, CPU 2 cores; labels: OSQP time / layer time)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path = out / "speed_vs_osqp.png"
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_proxy(plt, out: Path) -> tuple[Path, Path]:
    header, rows = proxy_table()
    keep = [r for r in rows if "feasibility check only" not in r[0] and "large" not in r[0]]
    labels = [re.sub(r" \(batch[^)]*\)|[`*]", "", r[0]).replace("(convex) ", "") or "(default)" for r in keep]
    rs = [float(r[1].strip("*")) for r in keep]
    fig, ax = plt.subplots(figsize=(8.5, 5))
    colors = ["#ef6c00" if "nonconvex" in label else "#3f51b5" for label in labels]
    ax.barh(range(len(labels)), rs, color=colors)
    for i, value in enumerate(rs):
        ax.text(value * 1.08, i, f"{value:.2g}", va="center", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(min(rs) / 1.5, max(rs) * 2.0)
    ax.axvline(0.106, color="grey", ls="--", lw=1, label="DC3 (convex, published): 0.106")
    ax.axvline(0.013, color="grey", ls=":", lw=1, label="HardNet-Aff (nonconvex, published): 0.013")
    ax.set_xlabel("mean relative suboptimality on the test rows (lower is better)")
    ax.set_title(
        "Optimization proxy on DC3's QP (100 variables, 50 + 50 rows)\n"
        "(keras-lincon proxy; blue: convex, orange: nonconvex; CPU, 2 cores)",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    path = out / "proxy.png"
    fig.savefig(path, dpi=150)
    plt.close(fig)

    table = out / "proxy_table.md"
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, table


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    written = [plot_quality(plt, args.out), plot_vae_quality(plt, args.out)]
    written += [plot_layer_vs_dense(plt, args.out), plot_vs_osqp(plt, args.out)]
    written += list(plot_proxy(plt, args.out))
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
