"""`virnucpro plot`: a PNG of the virus score along the top sequences of a run directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from virnucpro_core.cli import cli
from virnucpro_core.commands.plot import (
    OTHERS_COLOUR,
    VIRUS_COLOUR,
    build_figure,
    chunk_positions,
    collect_chunk_scores,
    select_top,
)
from virnucpro_core.report import PredictionWriter, iter_summary, write_sequence_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    """A finished 500 bp run: a host contig with a prophage in chunks 4-6 and no frame in chunk 8,
    a phage read, a bacterial contig and a read without any stop-free frame."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "sequences.tsv").write_text(
        "id\tlength\tchunks\nbacterium\t1000\t2\nhost_contig\t4800\t10\nphage_read\t500\t1\nnoframes\t300\t1\n"
    )
    frames = [("bacterium_chunk_1F1", 0.8, 0.2), ("bacterium_chunk_2R1", 0.7, 0.3), ("phage_read_chunk_1F3", 0.03, 0.97)]
    for k in range(1, 11):
        if k == 8:
            continue
        virus = 0.9 if k in (4, 5, 6) else 0.1
        frames += [(f"host_contig_chunk_{k}F1", 1 - virus, virus), (f"host_contig_chunk_{k}R2", 0.6, 0.4)]
    with PredictionWriter(out / "prediction_results.txt") as writer:
        writer.write([f[0] for f in frames], np.array([f[1:] for f in frames], dtype=np.float32))
    write_sequence_summary(out / "sequences.tsv", out / "prediction_results.txt", out / "sequence_summary.tsv")
    (out / "run.json").write_text(json.dumps({"identity": {"parameters": {"chunk_size": 500}}}))
    return out


def invoke(*args: str):
    return CliRunner().invoke(cli, ["plot", *map(str, args)])


def test_plot_writes_a_png_into_the_run_directory(outdir):
    result = invoke(outdir)
    assert result.exit_code == 0, result.output
    png = outdir / "prediction.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert result.output == f"Wrote {png} (3 sequences)\n"


def test_plot_top_and_output_options(outdir, tmp_path):
    target = tmp_path / "top1.png"
    result = invoke(outdir, "--top", "1", "-o", target)
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == PNG_MAGIC
    assert result.output == f"Wrote {target} (1 sequence)\n"
    assert not (outdir / "prediction.png").exists()


def test_top_sequences_rank_by_viral_chunks_then_best_score_and_skip_unscored(outdir):
    rows = select_top(outdir / "sequence_summary.tsv", 10)
    assert [r.sequence_id for r in rows] == ["host_contig", "phage_read", "bacterium"]
    assert [r.sequence_id for r in select_top(outdir / "sequence_summary.tsv", 1)] == ["host_contig"]


def test_chunks_sit_at_their_real_positions_and_height_is_the_margin_the_call_uses(outdir):
    rows = select_top(outdir / "sequence_summary.tsv", 2)
    scores = collect_chunk_scores(outdir / "prediction_results.txt", {r.sequence_id for r in rows})
    assert set(scores) == {"host_contig", "phage_read"}
    assert [c.index for c in scores["host_contig"]] == [1, 2, 3, 4, 5, 6, 7, 9, 10]
    fig = build_figure(rows, scores, chunk_size=500)
    host = fig.axes[0]
    assert host.get_title(loc="left") == "host_contig: others (3/9 scored chunks viral, 4800 bp)"
    assert host.get_xlabel() == "position (kb)" and host.get_ylabel() == "virus − others\n(best frame scores)"
    red = [(tuple(line.get_xdata()), line.get_ydata()[0]) for line in host.get_lines() if line.get_color() == VIRUS_COLOUR]
    # 4800 bp at 500: 10 chunks stepping by 479 (the original rule), the last one short;
    # prophage chunks: best virus 0.9 (F1) - best others 0.6 (R2)
    assert red == [((1437, 1937), pytest.approx(0.3)), ((1916, 2416), pytest.approx(0.3)), ((2395, 2895), pytest.approx(0.3))]
    blue = [(tuple(line.get_xdata()), line.get_ydata()[0]) for line in host.get_lines() if line.get_color() == OTHERS_COLOUR]
    assert blue[-1] == ((4311, 4800), pytest.approx(0.4 - 0.9)) and len(blue) == 6
    boundary = [line for line in host.get_lines() if line.get_linestyle() == "--"]
    assert len(boundary) == 1 and list(boundary[0].get_ydata()) == [0.0, 0.0]
    assert fig.axes[1].get_title(loc="left") == "phage_read: virus (1/1 scored chunks viral, 500 bp)"


def test_the_side_of_the_line_is_the_call_even_where_a_virus_score_is_above_one_half(tmp_path):
    """A chunk whose best virus frame scores 0.55 but whose best others frame scores 0.6 is
    called others: it must be drawn below the line, in blue (a 0.5 line on the virus score
    drew it above)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "sequences.tsv").write_text("id\tlength\tchunks\ncontig\t1000\t2\n")
    frames = [("contig_chunk_1F1", 0.45, 0.55), ("contig_chunk_1R1", 0.6, 0.4),  # others, by 0.05
              ("contig_chunk_2F2", 0.3, 0.7)]                                      # virus
    with PredictionWriter(out / "prediction_results.txt") as writer:
        writer.write([f[0] for f in frames], np.array([f[1:] for f in frames], dtype=np.float32))
    write_sequence_summary(out / "sequences.tsv", out / "prediction_results.txt", out / "sequence_summary.tsv")
    rows = select_top(out / "sequence_summary.tsv", 1)
    scores = collect_chunk_scores(out / "prediction_results.txt", {"contig"})
    assert [c.viral for c in scores["contig"]] == [False, True]
    ax = build_figure(rows, scores, chunk_size=500).axes[0]
    drawn = [(line.get_color(), line.get_ydata()[0]) for line in ax.get_lines() if line.get_linestyle() != "--"]
    assert drawn == [(OTHERS_COLOUR, pytest.approx(-0.05)), (VIRUS_COLOUR, pytest.approx(0.4))]
    assert all((height >= 0) == (colour == VIRUS_COLOUR) for colour, height in drawn)


def test_positions_are_labelled_in_kb_or_mb():
    from virnucpro_core.commands.plot import position_scale

    assert position_scale(4800) == (1e3, "kb")
    assert position_scale(999_999) == (1e3, "kb")
    assert position_scale(4_600_000) == (1e6, "Mb")
    row = _row("genome", 2_000_000, 4000)
    ax = build_figure([row], {}, chunk_size=500).axes[0]
    assert ax.get_xlabel() == "position (Mb)"
    assert ax.xaxis.get_major_formatter()(1_500_000, 0) == "1.5"


def test_positions_follow_the_original_chunk_rule():
    row = _row("r", 550, 2)
    assert chunk_positions(row, 500) == [(0, 500), (274, 550)]
    assert chunk_positions(row, None) == [(0, 1), (1, 2)]


def _row(sequence_id: str, length: int, chunks: int):
    from virnucpro_core.report import SummaryRow

    return SummaryRow(sequence_id, length, chunks, chunks, chunks, 0, 0.0, 0.1, 0.1, "others")


def test_without_a_chunk_size_chunks_are_placed_by_number(outdir):
    (outdir / "run.json").unlink()
    rows = select_top(outdir / "sequence_summary.tsv", 1)
    fig = build_figure(rows, collect_chunk_scores(outdir / "prediction_results.txt", {"host_contig"}), chunk_size=None)
    assert fig.axes[0].get_xlabel() == "chunk"
    assert invoke(outdir).exit_code == 0


def test_a_chunk_size_that_does_not_fit_the_run_is_an_error(outdir):
    result = invoke(outdir, "--chunk-size", "300")
    assert result.exit_code == 1
    assert result.output == (
        "Error: chunk size 300 cuts 'host_contig' (4800 bp) into 16 chunks, but the run made 10; "
        "give the run's --chunk-size\n"
    )
    assert not (outdir / "prediction.png").exists()


def test_a_missing_run_directory_is_a_one_line_error(tmp_path):
    result = invoke(tmp_path / "nowhere")
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'nowhere'}: no such directory; give the output directory of `virnucpro predict`\n"


def test_a_run_directory_without_a_summary_is_a_one_line_error(tmp_path):
    result = invoke(tmp_path)
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'sequence_summary.tsv'}: no such file; run `virnucpro predict` first\n"


def test_nothing_scored_is_a_one_line_error(outdir):
    summary = outdir / "sequence_summary.tsv"
    summary.write_text(summary.read_text().splitlines(keepends=True)[0] + "noframes\t300\t1\t0\t0\t0\tNA\tNA\tNA\tno_frames\n")
    assert [r.call for r in iter_summary(summary)] == ["no_frames"]
    result = invoke(outdir)
    assert result.exit_code == 1
    assert result.output == f"Error: {summary}: no sequence has a scored frame, so there is nothing to plot\n"


def test_without_matplotlib_the_error_says_how_to_install_it(outdir, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    result = invoke(outdir)
    assert result.exit_code == 1
    assert result.output == (
        "Error: `virnucpro plot` needs matplotlib, which is not installed; install it with: pip install 'virnucpro[plot]'\n"
    )


def test_the_tiny_model_warning_of_a_run_is_read_for_the_figure(tmp_path):
    from virnucpro_core.commands.plot import manifest_warning

    assert manifest_warning(tmp_path) is None
    (tmp_path / "run.json").write_text(json.dumps({"warning": "RANDOM TINY MODELS: not meaningful"}))
    assert manifest_warning(tmp_path) == "RANDOM TINY MODELS: not meaningful"


def test_sort_puts_whole_viruses_or_the_best_frame_first(outdir):
    """host_contig: 3 of 9 scored chunks viral, best 0.9; phage_read: 1 of 1, best 0.97; bacterium: 0 of 2, best 0.3."""
    summary = outdir / "sequence_summary.tsv"
    assert [r.sequence_id for r in select_top(summary, 10, "viral-fraction")] == ["phage_read", "host_contig", "bacterium"]
    assert [r.sequence_id for r in select_top(summary, 10, "max-score")] == ["phage_read", "host_contig", "bacterium"]
    assert [r.sequence_id for r in select_top(summary, 10, "viral-chunks")] == ["host_contig", "phage_read", "bacterium"]
    result = invoke(outdir, "--top", "1", "--sort", "viral-fraction")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("suffix,magic", [(".pdf", b"%PDF"), (".svg", b"<?xml"), (".png", PNG_MAGIC)])
def test_plot_writes_the_format_its_suffix_names(outdir, tmp_path, suffix, magic):
    target = tmp_path / f"plot{suffix}"
    result = invoke(outdir, "-o", target)
    assert result.exit_code == 0, result.output
    assert target.read_bytes().startswith(magic)


def test_plot_refuses_a_suffix_it_cannot_write(outdir, tmp_path):
    result = invoke(outdir, "-o", tmp_path / "plot.docx")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {tmp_path / 'plot.docx'}: cannot tell the image format from the suffix .docx; "
                                    "end -o with one of: ")
    assert ".pdf" in result.output and not (tmp_path / "plot.docx").exists()


def test_plot_on_a_shard_directory_points_to_aggregate(tmp_path):
    shard = tmp_path / "s0"
    shard.mkdir()
    (shard / "shard.json").write_text("{}")
    (shard / "run.json").write_text("{}")
    result = invoke(shard)
    assert result.exit_code == 1
    assert result.output == (f"Error: {shard} is one shard of an array job (it holds shard.json, no results); join the "
                             "shards with `virnucpro aggregate SHARD_DIR... -o RESULTS` and plot RESULTS\n")
