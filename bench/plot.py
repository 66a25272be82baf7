"""The one figure: detection lag per approach, and first-request latency per condition.

matplotlib is a benchmark-only dependency (the `bench` extra); it is imported when the plot is drawn, so
the rest of the benchmark (and its smoke test) runs without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.first_request import CONDITIONS, TARGET_RATIO
from bench.readiness import APPROACHES, TARGET_LAG

SHORT_APPROACH = {
    "package": "preloader\n(package)",
    "bash": "preloader\n(bash)",
    "poll-loop": "ollama ps\nloop, 5 s",
    "fixed-sleep": "fixed\nsleep",
}
SHORT_CONDITION = {
    "cold": "cold",
    "preloaded": "after\npreloader",
    "after_load_only": "after\nload-only",
    "steady": "steady",
    "steady_cached": "steady,\nprompt cached",
}


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw(results: dict[str, Any], path: Path) -> bool:
    """Write the PNG; False when there is nothing to draw."""
    readiness = results["sections"].get("readiness")
    first = results["sections"].get("first_request")
    if not readiness and not first:
        return False
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to the file
    import matplotlib.pyplot as plt

    panels = [p for p in (readiness, first) if p]
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.2), squeeze=False)
    column = 0
    if readiness:
        _lag_panel(axes[0][column], readiness)
        column += 1
    if first:
        _latency_panel(axes[0][column], first)
    meta = results["meta"]
    figure.suptitle(
        f"ollama-preloader benchmark ({meta['mode']}, {meta['reps']} repetitions; {meta['machine']['cores']} cores, "
        f"Ollama {meta.get('ollama_version') or 'n/a'})",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _lag_panel(ax: Any, data: dict[str, Any]) -> None:
    servers = [s for s in ("fake", "real") if s in data["summary"]]
    width = 0.38
    colours = {"fake": "tab:blue", "real": "tab:orange"}
    keys = list(APPROACHES)
    for offset, server in enumerate(servers):
        shift = (offset - (len(servers) - 1) / 2) * width
        for index, key in enumerate(keys):
            lags = [
                r["lag"]
                for r in data["runs"]
                if r["server"] == server and r["approach"] == key and r["lag"] is not None
            ]
            if not lags:
                continue
            x = index + shift
            ax.scatter([x] * len(lags), lags, s=14, color=colours[server], alpha=0.55, zorder=3)
            median = data["summary"][server][key]["lag"]["median"]
            ax.hlines(median, x - width / 2.4, x + width / 2.4, color="black", linewidth=2, zorder=4)
            # Fake medians are labelled above their bar, real ones below, so neighbours never collide.
            above = server == "fake"
            ax.annotate(
                _short(median),
                (x, median),
                textcoords="offset points",
                xytext=(0, 4 if above else -4),
                ha="center",
                va="bottom" if above else "top",
                fontsize=7.5,
            )
        ax.scatter([], [], color=colours[server], label=f"{server} server")
    ax.axhline(TARGET_LAG, color="green", linestyle="--", linewidth=1, label=f"target {TARGET_LAG:g} s")
    ax.set_yscale("log")
    ax.set_xticks(range(len(keys)), [SHORT_APPROACH[k] for k in keys])
    ax.set_ylabel("detection lag (s, log scale)")
    ax.set_title("Ready → first warm request (dots: repetitions, bar: median)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3, which="both")


def _latency_panel(ax: Any, data: dict[str, Any]) -> None:
    """Each condition's latency divided by the steady state of the same repetition (the noise cancels)."""
    steady = {r["rep"]: r["wall"] for r in data["runs"] if r["condition"] == "steady"}
    keys = [key for key in CONDITIONS if key != "steady"]
    for index, key in enumerate(keys):
        ratios = [r["wall"] / steady[r["rep"]] for r in data["runs"] if r["condition"] == key and r["rep"] in steady]
        ax.scatter([index] * len(ratios), ratios, s=14, color="tab:purple", alpha=0.55, zorder=3)
        median = data["summary"][key]["wall_vs_steady"]["median"]
        ax.hlines(median, index - 0.3, index + 0.3, color="black", linewidth=2, zorder=4)
        ax.annotate(
            f"{median:.2f}\u00d7", (index, median), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8
        )
    ax.axhline(1.0, color="grey", linewidth=1, label="steady state")
    target = f"target: {TARGET_RATIO:g} \u00d7 steady"
    ax.axhline(TARGET_RATIO, color="green", linestyle="--", linewidth=1, label=target)
    labels = [f"{SHORT_CONDITION[k]}\n({_short(data['summary'][k]['wall']['median'])})" for k in keys]
    ax.set_xticks(range(len(keys)), labels)
    ax.set_ylabel("latency \u00f7 steady state (same repetition)")
    ax.set_ylim(bottom=0)
    steady_median = _short(data["summary"]["steady"]["wall"]["median"])
    ax.set_title(f"First /api/generate, SmolLM2-135M, 16 tokens (steady: {steady_median})", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)


def _short(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
