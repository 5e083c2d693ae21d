"""What the terminal and `--log-file` show: the ending line last, bars only on a terminal,
log lines never on a bar's line, stage lines in words, honest rates, the command in run.json,
and nothing left behind by a run that finished no stage."""

from __future__ import annotations

import io
import json
import logging
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from virnucpro_core.cli import cli
from virnucpro_core.progress import BarSafeHandler, PlainProgress
from virnucpro_core.registry import load_registry

_installed = {b.key for b in load_registry().list_backends()}
needs_backends = pytest.mark.skipif(not {"esm2=v2", "dnabert=v2"} <= _installed,
                                    reason="needs the first-party backends (pip install -r requirements-dev.txt)")


@pytest.fixture(autouse=True)
def quiet_root_logger():
    yield
    from virnucpro_core.logs import setup_logging

    setup_logging(0, True)  # drop this test's --log-file handler


@pytest.fixture()
def contigs(tmp_path) -> Path:
    rng = random.Random(7)
    path = tmp_path / "contigs.fa"
    path.write_text("".join(f">c{i}\n{''.join(rng.choice('ACGT') for _ in range(700))}\n" for i in range(3)))
    return path


def _predict(*args: str):
    return CliRunner().invoke(cli, ["predict", *args, "--device", "cpu"])


@needs_backends
def test_the_log_file_ends_with_the_line_that_ended_the_run(tmp_path, tiny_models, contigs):
    log_file = tmp_path / "ok.log"
    result = _predict(str(contigs), "-o", str(tmp_path / "ok"), "--models-dir", str(tiny_models), "--log-file", str(log_file))
    assert result.exit_code == 0, result.output
    last = log_file.read_text().splitlines()[-1]
    assert last.endswith(result.output.splitlines()[-1])  # the tiny-model warning, the summary's last line

    bad = tmp_path / "bad.fa"
    bad.write_text(">p1\nMKVLLQ\n")
    log_file = tmp_path / "bad.log"
    result = _predict(str(bad), "-o", str(tmp_path / "bad"), "--models-dir", str(tiny_models), "--log-file", str(log_file))
    assert result.exit_code == 1
    error = result.output.splitlines()[-1]
    assert error.startswith("Error: ") and log_file.read_text().splitlines()[-1].endswith(error)


@needs_backends
def test_an_unexpected_error_leaves_its_traceback_in_the_log_file(tmp_path, tiny_models, contigs, monkeypatch):
    import virnucpro_core.prepare

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug in prepare")

    monkeypatch.setattr(virnucpro_core.prepare, "prepare_file", broken)
    log_file = tmp_path / "bug.log"
    result = _predict(str(contigs), "-o", str(tmp_path / "o"), "--models-dir", str(tiny_models), "--log-file", str(log_file))
    assert isinstance(result.exception, ZeroDivisionError)
    text = log_file.read_text()
    assert "unexpected error; please report it with this log" in text
    assert "Traceback (most recent call last)" in text and text.rstrip().endswith("ZeroDivisionError: a bug in prepare")


@needs_backends
def test_stage_lines_are_words_and_run_json_has_the_command_line(tmp_path, tiny_models, contigs):
    log_file = tmp_path / "run.log"
    out = tmp_path / "o"
    args = [str(contigs), "-o", str(out), "--models-dir", str(tiny_models), "--log-file", str(log_file), "-q"]
    result = _predict(*args)
    assert result.exit_code == 0, result.output
    stage_lines = [line for line in log_file.read_text().splitlines() if " stage " in line and ": done in " in line]
    # prepare, classify (embed + score, part by part), report
    assert len(stage_lines) == 3 and not any("{" in line or "'" in line for line in stage_lines), stage_lines
    prepare = next(line for line in stage_lines if "stage prepare:" in line)
    assert prepare.endswith("s (3 sequences, 2100 bases, 6 chunks, " + prepare.split(", 6 chunks, ")[1])
    assert "frames, 0 empty skipped)" in prepare
    info = json.loads((out / "run.json").read_text())["info"]
    assert info["command_line"] == "virnucpro predict " + " ".join(args + ["--device", "cpu"])


@needs_backends
def test_without_a_terminal_there_is_no_bar_only_plain_progress_lines(tmp_path, tiny_models, contigs):
    """stderr is a pipe here, as in a SLURM job: no carriage returns, no bar glyphs; plain lines instead."""
    lam = Path(__file__).parent / "data" / "genomes" / "lambda_NC_001416.fa.gz"
    done = subprocess.run([sys.executable, "-m", "virnucpro_core", "predict", str(lam), "-o", str(tmp_path / "o"),
                           "--models-dir", str(tiny_models), "--device", "cpu", "--backend", "dnabert=v2"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "|" not in done.stderr and "it/s" not in done.stderr, done.stderr
    assert "INFO embed + score: 45 of 45 frame (100%), " in done.stderr, done.stderr
    assert f"INFO prepare {lam}: 48502 of 48502 bp (100%), " in done.stderr, done.stderr


def test_plain_progress_writes_at_most_every_30_seconds_and_once_at_the_end(caplog):
    now = [0.0]
    caplog.set_level(logging.INFO, logger="virnucpro_core.progress")
    bar = PlainProgress(desc="embed x=v1", unit="seq", total=1000, initial=400, clock=lambda: now[0])
    for _ in range(60):  # one second and 10 sequences per update
        now[0] += 1
        bar.update(10)
    bar.close()
    bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["embed x=v1: 700 of 1000 seq (70%), 10.0 seq/s",  # 30 s: the 300 computed, not the 400 resumed
                     "embed x=v1: 1000 of 1000 seq (100%), 10.0 seq/s"]


def test_a_log_line_never_lands_on_a_bar_line():
    from tqdm import tqdm

    from virnucpro_core.logs import setup_logging

    stream = io.StringIO()
    setup_logging(0, False)  # the console handler every command installs
    console = next(h for h in logging.getLogger().handlers if getattr(h, "_virnucpro", False))
    assert isinstance(console, BarSafeHandler)
    console.setStream(stream)
    with tqdm(total=10, desc="embed x=v1", file=stream, mininterval=0, miniters=1, ascii=True) as bar:
        bar.update(3)
        logging.getLogger("virnucpro_core.test_bar").warning("a message while the bar is drawn")
        bar.update(3)
    line = next(line for line in stream.getvalue().split("\n") if "a message" in line)
    assert line.split("\r")[-1].endswith(" WARNING a message while the bar is drawn")
    assert "embed x=v1" not in line.split("\r")[-1]


def test_the_rate_of_a_resumed_embed_counts_only_what_it_computed(tmp_path, monkeypatch):
    import virnucpro_core.embedding as embedding
    from virnucpro_core.embedding import EmbedResult
    from virnucpro_core.engine.parts import PartPlan

    plan = PartPlan(total_records=250, part_size=100, parts=3, todo=(2,), reused=(0, 1), dim=256, model="kmer-4")
    assert EmbedResult(tmp_path, 250, 256, "kmer-4", 1, 2, 5.0, plan=plan).sequences_computed == 50

    def resumed(fasta, out, backend, options, **kwargs):
        return EmbedResult(out, 250, 256, "kmer-4", 1, 2, 5.0, plan=plan)

    monkeypatch.setattr(embedding, "embed_fasta", resumed)
    if "kmer=v1" not in _installed:
        pytest.skip("virnucpro-kmer not installed")
    fasta = tmp_path / "s.fa"
    fasta.write_text(">a\nACGT\n")
    result = CliRunner().invoke(cli, ["embed", str(fasta), "--backend", "kmer=v1", "-o", str(tmp_path / "k.h5"), "-q"])
    assert result.exit_code == 0, result.output
    assert "; 10.0 seq/s, 2 part(s) resumed)" in result.output  # 50 computed in 5 s, not 250


@needs_backends
def test_a_predict_that_finished_no_stage_leaves_nothing_behind(tmp_path, tiny_models):
    bad = tmp_path / "bad.fa"
    bad.write_text(">ok\n" + "ACGT" * 200 + "\n>p1\nMKVLLQ\n")
    out = tmp_path / "new"
    result = _predict(str(bad), "-o", str(out), "--models-dir", str(tiny_models), "-q")
    assert result.exit_code == 1 and "record 'p1'" in result.output
    assert not out.exists()
    # a folder the user made (here holding the run's own log file) is kept, with only what was there
    kept = tmp_path / "kept"
    result = _predict(str(bad), "-o", str(kept), "--models-dir", str(tiny_models), "-q", "--log-file", str(kept / "run.log"))
    assert result.exit_code == 1
    assert [p.name for p in kept.iterdir()] == ["run.log"]


def test_worker_log_lines_erase_the_bar_line_on_a_terminal_only(monkeypatch):
    import virnucpro_core.progress as progress

    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    assert progress.erase_bar_prefix() == "\r\x1b[2K"
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: False)
    assert progress.erase_bar_prefix() == ""
