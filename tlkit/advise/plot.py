"""advice.png: the three scores per stage, one line per backbone."""

from tlkit.evaluation import plots


def advice_figure(advice):
    """The per-stage LogME, kNN and probe accuracies of every backbone as a `Figure`.

    Args:
        advice: a `tlkit.advise.Advice` (its `backbones` with per-stage scores and its
            `choice`).

    Returns:
        A `Figure` with three panels and the choice as its title.
    """
    fig = plots.new_figure(13, 4)
    axes = fig.subplots(1, 3)
    panels = (("linear_probe_accuracy", "linear probe, val accuracy"),
              ("knn_accuracy", "cosine kNN, val accuracy"),
              ("logme", "LogME (per sample; compare within this data only)"))
    counts = {len(b["stages"]) for b in advice.backbones}
    same = len(counts) == 1  # else each backbone's stages on a shared depth axis, 0 to 1
    for ax, (key, title) in zip(axes, panels):
        for b in advice.backbones:
            stages = b["stages"]
            n = len(stages)
            x = list(range(n)) if same else [i / max(1, n - 1) for i in range(n)]
            ax.plot(x, [s[key] for s in stages], marker="o", label=b["backbone"])
        if same:
            names = [s["name"] for s in advice.backbones[0]["stages"]]
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=30)
            ax.set_xlabel("stage (input -> output)")
        else:
            ax.set_xticks([0, 0.5, 1])
            ax.set_xticklabels(["first stage", "middle", "last stage"])
            ax.set_xlabel("relative depth (each backbone's stages spread from 0 to 1)")
        ax.set_title(title, fontsize=10)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    c = advice.choice
    fig.suptitle(f"advice: {c['backbone']} --strategy {c['strategy']}"
                 + (f" --unfreeze {c['unfreeze']}" if c.get("unfreeze") else ""), fontsize=11)
    fig.tight_layout()
    return fig


def save_scores(advice, path):
    """Write `advice_figure(advice)` as a PNG (atomically, mode 0644); returns the path."""
    return plots.save_figure(advice_figure(advice), path)
