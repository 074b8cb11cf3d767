"""``speedup.png``: measured vs theoretical speedup of the deployable forms, at batch 1 and 256."""
from __future__ import annotations

from pathlib import Path

from bench.benchmark.rows import Row, find, median_of


def plot(rows: list[Row], names: list[str], path: Path) -> None:
    from bench.drawing import pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, batch in zip(axes, (1, 256)):
        top = 1.0
        for name in names:
            theory = {r.condition: median_of(r) for r in find(rows, "deployed", name, quantity="theoretical_speedup")}
            for variant, style in (("eager", "-o"), ("lean", "--s")):
                pts = []
                for cond, t in sorted(theory.items(), key=lambda kv: kv[1]):
                    got = find(rows, "deployed", name, f"{cond} b{batch}", f"{variant}_speedup")
                    if got:
                        pts.append((t, median_of(got[0])))
                if pts:
                    ax.plot(*zip(*pts), style, label=f"{name} ({variant})", markersize=4)
                    top = max(top, *(p[0] for p in pts))
        ax.plot([1, top], [1, top], ":", color="grey", label="measured = theoretical")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("theoretical speedup (FLOPs)")
        ax.set_title(f"batch {batch}, 1 thread")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("measured latency speedup of deployable()")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
