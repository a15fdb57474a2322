"""The peer benchmark's results as files: `results.json` (everything), `results.md` (the table) and `results.png`
(training samples/s and generation tokens/s as bars, min-max as error bars)."""

import json
from pathlib import Path
from typing import Any

GROUP_COLOURS = {"vision": "tab:blue", "audio": "tab:orange", "text": "tab:gray"}
TABLE_HEADER = (
    "| system | train samples/s (min-max) | vs peer | vs GPT-2 alone | generation tokens/s (min-max) | vs peer "
    "| vs GPT-2 alone | peak memory (MiB) | decoder positions |"
)


def write_results(results: dict[str, Any], output_dir: str | Path) -> dict[str, Path]:
    """Write `results` (`{"settings": {...}, "systems": [rows from measure_systems]}`) to `output_dir`.

    Returns:
        `dict[str, Path]`: the paths written, under the keys `"json"`, `"markdown"` and `"chart"`.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": output_dir / "results.json",
        "markdown": output_dir / "results.md",
        "chart": output_dir / "results.png",
    }
    paths["json"].write_text(json.dumps(results, indent=2) + "\n")
    paths["markdown"].write_text(markdown_table(results))
    bar_chart(results, paths["chart"])
    return paths


def markdown_table(results: dict[str, Any]) -> str:
    """The results as a markdown section: settings, the table (one row per system), and how memory was measured."""
    settings = results["settings"]
    lines = [
        "# MultimodalGPT against the models it replaces",
        "",
        f"`{settings['command']}`",
        "",
        f"{settings['device']} ({settings['device_name']}), {settings['precision']}"
        f"{', compiled' if settings.get('compile') else ''}, {settings['rounds']} timed "
        f"round(s) after one warm-up round, medians; batch {settings['shapes']['batch_size']}, "
        f"{settings['shapes']['text_tokens']} labelled text tokens, {settings['shapes']['new_tokens']} new tokens "
        f"per generated sample; torch {settings['torch']}, transformers {settings['transformers']}, "
        f"{settings['threads']} CPU thread(s).",
        "",
        TABLE_HEADER,
        "|" + " --- |" * TABLE_HEADER.count(" | ") + " --- |",
    ]
    for row in results["systems"]:
        lines.append(
            f"| {row['label']} | {_rate(row['train_samples_per_s'])} | {_ratio(row['vs_peer'], 'train')} "
            f"| {_ratio(row['vs_gpt2'], 'train')} | {_rate(row['generation_tokens_per_s'])} "
            f"| {_ratio(row['vs_peer'], 'generation')} | {_ratio(row['vs_gpt2'], 'generation')} "
            f"| {row['peak_memory_mib']:,.0f} | {row['decoder_positions']} |"
        )
    if settings.get("compile"):
        eager = [row["label"] for row in results["systems"] if not row.get("compiled_generation")]
        lines += [
            "",
            "Compiled (`--compile`): every training step runs `torch.compile`d; generation uses a static cache and a "
            "compiled decoding step"
            + (f", except for {', '.join(eager)} (eager decoding)" if eager else "")
            + ". Compile time is excluded (the warm-up round compiles): "
            + ", ".join(f"{row['label']} {row['warm_up_s']:.0f} s" for row in results["systems"])
            + ".",
        ]
    lines += ["", f"Peak memory: {settings['memory_method']}", ""]
    return "\n".join(lines)


def _rate(spread: dict[str, float]) -> str:
    digits = 2 if spread["median"] < 100 else 0
    return f"{spread['median']:,.{digits}f} ({spread['min']:,.{digits}f}-{spread['max']:,.{digits}f})"


def _ratio(ratios: dict[str, Any] | None, kind: str) -> str:
    return "-" if ratios is None else f"{ratios[kind]:.2f}"


def bar_chart(results: dict[str, Any], path: Path) -> None:
    """Two panels of horizontal bars (training samples/s, generation tokens/s), coloured by modality."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = results["systems"]
    figure, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(rows) + 1.8), sharey=True)
    positions = range(len(rows))
    for axis, key, title in (
        (axes[0], "train_samples_per_s", "training samples/s (forward + backward + AdamW)"),
        (axes[1], "generation_tokens_per_s", "greedy generation tokens/s (KV cache)"),
    ):
        medians = [row[key]["median"] for row in rows]
        errors = [
            [row[key]["median"] - row[key]["min"] for row in rows],
            [row[key]["max"] - row[key]["median"] for row in rows],
        ]
        axis.barh(positions, medians, xerr=errors, color=[GROUP_COLOURS[row["group"]] for row in rows], capsize=3)
        axis.set_title(title, fontsize=10)
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(list(positions), [row["label"] for row in rows], fontsize=8)
    axes[0].invert_yaxis()
    settings = results["settings"]
    figure.suptitle(
        f"{settings['device']}, {settings['precision']}: medians of {settings['rounds']} round(s), min-max bars"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


__all__ = ["bar_chart", "markdown_table", "write_results"]
