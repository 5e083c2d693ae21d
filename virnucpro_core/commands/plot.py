"""``virnucpro plot``: virus score along the most viral sequences of a run.

The original ``drew_fig.py`` drew the first five sequences of the file with the
larger of the two scores per frame at ``chunk number × 500``. This plots, for the top
N sequences by viral chunks (then by best virus score), each chunk at its real
position (the chunking rule and the run's chunk size; in kb, or Mb for long
sequences) at the height of what the call uses: the chunk's *margin*, its best virus
score minus its best non-virus score over its frames. The consensus rule calls a chunk
virus when the margin is ≥ 0, so the line at 0 is the call boundary and the colour
always agrees with the side of the line (a line at a virus score of 0.5 would not: a
chunk with a 0.55 virus frame and a 0.6 others frame is called others). A prophage
shows as a red plateau above 0 inside a blue host contig.

matplotlib is an optional extra (``pip install 'virnucpro[plot]'``) and is imported
only when the command runs.
"""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass
from pathlib import Path

import click

from virnucpro_core.errors import InputError, VirnucproError

DEFAULT_PNG = "prediction.png"
VIRUS_COLOUR = "#c0392b"
OTHERS_COLOUR = "#1f4e9c"
UNSCORED_COLOUR = "#d9d9d9"


@dataclass(frozen=True)
class ChunkScore:
    """One chunk of a plotted sequence: 1-based index, best scores of its frames."""

    index: int
    max_others: float
    max_virus: float

    @property
    def viral(self) -> bool:
        return self.max_virus >= self.max_others  # the original consensus rule

    @property
    def margin(self) -> float:
        """Best virus minus best others: ≥ 0 exactly when the chunk is called virus."""
        return self.max_virus - self.max_others


def _import_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise VirnucproError(
            "`virnucpro plot` needs matplotlib, which is not installed; install it with: pip install 'virnucpro[plot]'"
        ) from None
    return Figure, FigureCanvasAgg


def manifest_warning(outdir: Path) -> str | None:
    """The run's ``warning`` (set for tiny random models), or None."""
    try:
        return json.loads((outdir / "run.json").read_text(encoding="utf-8")).get("warning")
    except (OSError, ValueError, AttributeError):
        return None


def chunk_size_from_manifest(outdir: Path) -> int | None:
    """``identity.parameters.chunk_size`` from ``OUTDIR/run.json``, or None when absent or unreadable."""
    manifest = outdir / "run.json"
    try:
        value = json.loads(manifest.read_text(encoding="utf-8"))["identity"]["parameters"]["chunk_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


#: ``--sort`` keys: what ranks first, then the ties, then input order.
SORT_KEYS = ("viral-chunks", "viral-fraction", "max-score")


def select_top(summary: Path, n: int, sort: str = "viral-chunks") -> list:
    """The ``n`` scored sequences that rank first by ``sort``, highest first, ties broken in input order.

    ``viral-chunks`` (the default): most viral chunks, then best virus score; it favours
    long contigs, where a prophage in a host is found. ``viral-fraction``: the largest
    share of scored chunks viral, then most viral chunks (whole viruses first, long or
    short). ``max-score``: the best virus score of any frame, then most viral chunks.
    """
    from virnucpro_core.report import iter_summary

    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {SORT_KEYS}, got {sort!r}")

    def high(value: float) -> float:
        return -1.0 if math.isnan(value) else value

    def rank(item):
        order, row = item
        if sort == "viral-fraction":
            return (-high(row.viral_fraction), -row.viral_chunks, order)
        if sort == "max-score":
            return (-high(row.max_virus_score), -row.viral_chunks, order)
        return (-row.viral_chunks, -high(row.max_virus_score), order)

    scored = ((order, row) for order, row in enumerate(iter_summary(summary)) if row.frames_scored > 0)
    return [row for _, row in heapq.nsmallest(n, scored, key=rank)]


def collect_chunk_scores(predictions: Path, sequence_ids: set[str]) -> dict[str, list[ChunkScore]]:
    """Best others/virus score per chunk for the given sequences only (memory: those sequences)."""
    from virnucpro_core.report import _nanmax, iter_predictions, parse_frame_id

    best: dict[str, dict[int, list[float]]] = {sid: {} for sid in sequence_ids}
    for row in iter_predictions(predictions):
        frame = parse_frame_id(row.frame_id)
        if frame is None or frame.sequence_id not in best:
            continue
        slot = best[frame.sequence_id].setdefault(frame.chunk, [math.nan, math.nan])
        slot[0], slot[1] = _nanmax(slot[0], row.score1), _nanmax(slot[1], row.score2)
    return {
        sid: [ChunkScore(k, s[0], s[1]) for k, s in sorted(chunks.items())] for sid, chunks in best.items()
    }


def chunk_positions(row, chunk_size: int | None) -> list[tuple[float, float]]:
    """(start, end) of chunks 1..n of a summary row on the x axis: bp when the chunk
    size is known (the original's chunk rule), else the chunk number."""
    if chunk_size is None:
        return [(k, k + 1) for k in range(row.chunks)]
    from virnucpro_core.chunking import chunk_spans

    spans = chunk_spans(row.length, chunk_size)
    if len(spans) != row.chunks:
        raise InputError(
            f"chunk size {chunk_size} cuts {row.sequence_id!r} ({row.length} bp) into {len(spans)} chunks, "
            f"but the run made {row.chunks}; give the run's --chunk-size"
        )
    return spans


def position_scale(length: int) -> tuple[float, str]:
    """Divisor and unit for an x axis in bp: Mb from 1 Mb on, kb below."""
    return (1e6, "Mb") if length >= 1_000_000 else (1e3, "kb")


def build_figure(rows: list, scores: dict[str, list[ChunkScore]], *, chunk_size: int | None):
    """A matplotlib Figure (Agg canvas, no pyplot state) with one panel per summary row.

    Data coordinates stay in bp (or chunk numbers); only the tick labels are scaled.
    """
    Figure, FigureCanvasAgg = _import_matplotlib()
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(12, 1.2 + 2.1 * len(rows)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows=len(rows), ncols=1, squeeze=False)[:, 0]
    for ax, row in zip(axes, rows):
        spans = chunk_positions(row, chunk_size)
        scored = {c.index: c for c in scores.get(row.sequence_id, [])}
        for index, (start, end) in enumerate(spans, start=1):
            chunk = scored.get(index)
            if chunk is None:
                ax.axvspan(start, end, color=UNSCORED_COLOUR, alpha=0.5, linewidth=0)
                continue
            colour = VIRUS_COLOUR if chunk.viral else OTHERS_COLOUR
            ax.plot([start, end], [chunk.margin, chunk.margin], color=colour, linewidth=2.5, solid_capstyle="butt")
        ax.axhline(0.0, color="0.4", linestyle="--", linewidth=1)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlim(0, spans[-1][1] if spans else 1)
        ax.set_ylabel("virus − others\n(best frame scores)", fontsize=9)
        if chunk_size:
            scale, unit = position_scale(row.length)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos, scale=scale: f"{x / scale:g}"))
            ax.set_xlabel(f"position ({unit})")
        else:
            ax.set_xlabel("chunk")
        ax.set_title(
            f"{row.sequence_id}: {row.call} ({row.viral_chunks}/{row.chunks_scored} scored chunks viral, "
            f"{row.length} bp)",
            loc="left",
            fontsize=11,
        )
        ax.spines[["top", "right"]].set_visible(False)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], color=VIRUS_COLOUR, linewidth=2.5, label="chunk called virus (best virus ≥ best others)"),
        Line2D([], [], color=OTHERS_COLOUR, linewidth=2.5, label="chunk called others"),
        Patch(color=UNSCORED_COLOUR, alpha=0.5, label="no stop-free frame"),
        Line2D([], [], color="0.4", linestyle="--", label="call boundary (margin 0)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncols=4, frameon=False)
    return fig


def plot_format(out: Path) -> str:
    """The image format ``out``'s suffix names (png, pdf, svg, ...), refused when matplotlib cannot write it,
    so that ``-o x.pdf`` never gets PNG bytes."""
    Figure, FigureCanvasAgg = _import_matplotlib()
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in supported:
        raise InputError(f"{out}: cannot tell the image format from {'the suffix .' + suffix if suffix else 'a name without suffix'}; "
                         f"end -o with one of: {', '.join('.' + k for k in sorted(supported))}")
    return suffix


def write_figure(fig, out: Path) -> None:
    """Save ``fig`` under ``out`` in the format its suffix names, atomically."""
    from virnucpro_core.atomic import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=plot_format(out), dpi=110)


@click.command("plot")
@click.argument("outdir", type=click.Path(path_type=Path))
@click.option("--top", "-n", default=5, show_default=True, type=click.IntRange(min=1), help="Sequences to plot: the first N by --sort.")
@click.option("--sort", type=click.Choice(SORT_KEYS), default="viral-chunks", show_default=True,
              help="Rank by most viral chunks (then best score; favours long contigs), by viral fraction (then viral "
                   "chunks), or by best virus score (then viral chunks); ties keep input order.")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
    help=f"Image file to write, in the format its suffix names (.png, .pdf, .svg, ...) [default: OUTDIR/{DEFAULT_PNG}].",
)
@click.option(
    "--chunk-size", type=click.IntRange(min=1), default=None,
    help="Chunk size of the run in bp [default: identity.parameters.chunk_size in OUTDIR/run.json; "
    "without either, chunks are placed by number].",
)
@click.option("--force", is_flag=True, help="Replace the plot file if it exists (refused otherwise).")
def plot(outdir: Path, top: int, sort: str, output: Path | None, chunk_size: int | None, force: bool) -> None:
    """Plot the call along the top N sequences of a finished run.

    Reads OUTDIR/sequence_summary.tsv and OUTDIR/prediction_results.txt. Each panel
    shows one sequence: every chunk as a segment at its position (kb, or Mb), at the
    height of its margin, best virus score minus best others score over its frames.
    The original calls a chunk virus when that margin is >= 0, so segments above the
    dashed line at 0 are red (virus) and those below blue (others); grey bands are
    chunks without a stop-free frame. Useful for spotting prophages in host contigs.

    The N sequences plotted are those with most viral chunks (ties: best virus score,
    then input order), which favours long contigs; --sort viral-fraction puts whole
    viruses first whatever their length, --sort max-score the single best frame.
    An existing plot file is refused unless --force.

    \b
    Examples:
      virnucpro plot results/ --top 10 -o results/top10.png
      virnucpro plot results/ --sort viral-fraction -o results/viruses.pdf
    """
    from virnucpro_core.report import PREDICTIONS_NAME, SUMMARY_NAME

    if not outdir.is_dir():
        raise InputError(f"{outdir}: no such directory; give the output directory of `virnucpro predict`")
    if (outdir / "shard.json").is_file() and not (outdir / SUMMARY_NAME).is_file():
        raise InputError(f"{outdir} is one shard of an array job (it holds shard.json, no results); join the shards with "
                         "`virnucpro aggregate SHARD_DIR... -o RESULTS` and plot RESULTS")
    _import_matplotlib()  # fail before reading anything when the extra is missing
    if chunk_size is None:
        chunk_size = chunk_size_from_manifest(outdir)
    output = output or outdir / DEFAULT_PNG
    if not output.parent.is_dir():
        raise InputError(f"{output.parent}: no such directory for the plot; create it or choose another -o")
    from virnucpro_core.outputs import Outputs, refuse_existing, refuse_inputs_as_outputs

    refuse_inputs_as_outputs(Outputs(files=(output,)), (outdir / SUMMARY_NAME, outdir / PREDICTIONS_NAME, outdir / "run.json"))
    refuse_existing(output, force=force)
    plot_format(output)  # before any work: -o x.pdf writes PDF, an unknown suffix is refused
    rows = select_top(outdir / SUMMARY_NAME, top, sort)
    if not rows:
        raise InputError(
            f"{outdir / SUMMARY_NAME}: no sequence has a scored frame, so there is nothing to plot"
        )
    scores = collect_chunk_scores(outdir / PREDICTIONS_NAME, {row.sequence_id for row in rows})
    fig = build_figure(rows, scores, chunk_size=chunk_size)
    warning = manifest_warning(outdir)
    if warning:  # results of tiny random models say so on the figure too
        fig.suptitle(warning, color=VIRUS_COLOUR, fontsize=11, fontweight="bold")
    write_figure(fig, output)
    click.echo(f"Wrote {output} ({len(rows)} sequence{'s' if len(rows) != 1 else ''})")
