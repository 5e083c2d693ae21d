"""Inputs are never outputs, and no file a command did not create is overwritten.

Every command is given an output that *is* one of its inputs (by name, through a symlink,
through a hard link, inside a folder it deletes) and must refuse in one line, before it
writes anything: the input keeps its bytes and no file appears. Then the ``--force`` rule:
an existing output is replaced only with ``--force``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from virnucpro_core.cli import cli
from virnucpro_core.errors import ConfigError
from virnucpro_core.outputs import Outputs, refuse_existing, refuse_foreign_directory, refuse_inputs_as_outputs

REF = Path(__file__).parent / "data" / "original_format" / "reference_vanilla_output"
FASTA = ">seq1 a record\nATGGCGTTTAAACCCGGGTTTAAACCCGGGATGGCGTTTAAACCCGGGTTTAAACCC\n"


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (symlinks as their target's name)."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            out[rel] = path.read_bytes()
        else:
            out[rel] = b"<dir>"
    return out


def assert_refused_untouched(result, root: Path, before: dict[str, bytes], *needles: str) -> None:
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert snapshot(root) == before  # nothing written, nothing lost


@pytest.fixture
def fasta(tmp_path: Path) -> Path:
    path = tmp_path / "x.fa"
    path.write_text(FASTA)
    return path


def run_dir(path: Path) -> Path:
    """A folder that is a VirNucPro run directory (it has a run.json written by a command)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text(json.dumps({"command": "predict", "status": "done", "stages": {}}))
    return path


# --------------------------------------------------------------------------- the check itself


def test_an_output_that_does_not_exist_yet_is_never_an_input(tmp_path, fasta):
    refuse_inputs_as_outputs(Outputs(files=(tmp_path / "new.h5",)), [fasta, "-", "esm2_t36_3B_UR50D", None])


@pytest.mark.parametrize("how", ["same name", "symlink", "hard link", "other spelling"])
def test_an_output_that_is_the_input_is_refused(tmp_path, fasta, how):
    out = tmp_path / "out.txt"
    if how == "same name":
        out = fasta
    elif how == "symlink":
        out.symlink_to(fasta)
    elif how == "hard link":
        os.link(fasta, out)
    else:
        (tmp_path / "sub").mkdir()
        out = tmp_path / "sub" / ".." / "x.fa"
    with pytest.raises(ConfigError, match="would destroy the input: move the input elsewhere or choose another -o"):
        refuse_inputs_as_outputs(Outputs(files=(out,)), [fasta])


def test_a_file_of_a_model_folder_is_an_input(tmp_path):
    model = tmp_path / "DNABERT-S"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="config.json"):
        refuse_inputs_as_outputs(Outputs(files=(model / "config.json",)), [model])


def test_an_input_inside_a_folder_the_command_deletes_is_refused(tmp_path):
    parts = tmp_path / "run" / "checkpoints"
    parts.mkdir(parents=True)
    (parts / "x.fa").write_text(FASTA)
    with pytest.raises(ConfigError, match="which this command owns and deletes"):
        refuse_inputs_as_outputs(Outputs(folders=(parts,)), [parts / "x.fa"])


# --------------------------------------------------------------------------- every command


def test_predict_refuses_its_input_as_viral_sequences_fa(tmp_path, fasta):
    """The issue's report: the input copied to run/viral_sequences.fa and given as INPUT."""
    run = run_dir(tmp_path / "run")
    shutil.copy(fasta, run / "viral_sequences.fa")
    before = snapshot(tmp_path)
    result = invoke("predict", run / "viral_sequences.fa", "-o", run, "--force")
    assert_refused_untouched(result, tmp_path, before, f"{run / 'viral_sequences.fa'} is the input")


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_predict_refuses_an_output_linked_to_its_input(tmp_path, fasta, link):
    run = run_dir(tmp_path / "run")
    (run / "prepare").mkdir()
    target = run / "prepare" / "x_chunked500.fa"
    target.symlink_to(fasta) if link == "symlink" else os.link(fasta, target)
    before = snapshot(tmp_path)
    result = invoke("predict", fasta, "-o", run, "--force")
    assert_refused_untouched(result, tmp_path, before, f"{target} is the same file as the input {fasta}")


def test_predict_refuses_an_input_in_its_checkpoint_folder(tmp_path):
    run = run_dir(tmp_path / "run")
    (run / "checkpoints").mkdir()
    inp = run / "checkpoints" / "x.fa"
    inp.write_text(FASTA)
    before = snapshot(tmp_path)
    result = invoke("predict", inp, "-o", run)
    assert_refused_untouched(result, tmp_path, before, "owns and deletes")


def test_predict_refuses_a_model_file_as_an_output(tmp_path, fasta):
    run = run_dir(tmp_path / "run")
    mlp = run / "prediction_results.txt"
    mlp.write_bytes(b"not really an MLP")
    before = snapshot(tmp_path)
    result = invoke("predict", fasta, "-o", run, "--mlp", mlp)
    assert_refused_untouched(result, tmp_path, before, f"{mlp} is the input {mlp}")


def test_predict_refuses_its_input_as_log_file(tmp_path, fasta):
    before = snapshot(tmp_path)
    result = invoke("predict", fasta, "-o", tmp_path / "run", "--log-file", fasta)
    assert_refused_untouched(result, tmp_path, before, "choose another --log-file")


def test_prepare_refuses_an_output_linked_to_its_input(tmp_path, fasta):
    out = tmp_path / "prep"
    out.mkdir()
    (out / "x_sequences.tsv").symlink_to(fasta)
    before = snapshot(tmp_path)
    assert_refused_untouched(invoke("prepare", fasta, "-o", out), tmp_path, before, "is the same file as the input")


@pytest.mark.parametrize("how", ["same name", "hard link", "log file"])
def test_embed_refuses_its_input_as_output(tmp_path, fasta, how):
    args = ["embed", fasta, "--backend", "kmer", "-o", fasta, "--force"]
    if how == "hard link":
        os.link(fasta, tmp_path / "k.h5")
        args[5] = tmp_path / "k.h5"
    elif how == "log file":
        args = ["embed", fasta, "--backend", "kmer", "-o", tmp_path / "k.h5", "--log-file", fasta]
    before = snapshot(tmp_path)
    assert_refused_untouched(invoke(*args), tmp_path, before, "would destroy the input")


def test_embed_shard_refuses_an_input_in_its_parts_folder(tmp_path):
    (tmp_path / "s0" / "parts").mkdir(parents=True)
    inp = tmp_path / "s0" / "parts" / "x.fa"
    inp.write_text(FASTA)
    before = snapshot(tmp_path)
    result = invoke("embed", inp, "--backend", "kmer", "-o", tmp_path / "s0", "--shard", "0/2")
    assert_refused_untouched(result, tmp_path, before, "owns and deletes")


def test_classify_refuses_a_result_file_linked_to_an_input(tmp_path):
    nuc = tmp_path / "n.pt"
    shutil.copy(REF / "output_1_DNABERT_S.pt", nuc)
    out = tmp_path / "res"
    out.mkdir()
    (out / "prediction_results.txt").symlink_to(nuc)
    before = snapshot(tmp_path)
    result = invoke("classify", "--nucleotide", nuc, "--protein", REF / "output_1_ESM.pt", "--mlp", nuc, "-o", out, "--force")
    assert_refused_untouched(result, tmp_path, before, "is the same file as the input")


def test_merge_and_convert_refuse_their_input_as_output(tmp_path):
    nuc = tmp_path / "n.pt"
    shutil.copy(REF / "output_1_DNABERT_S.pt", nuc)
    before = snapshot(tmp_path)
    result = invoke("merge", nuc, REF / "output_1_ESM.pt", "-o", nuc, "--force")
    assert_refused_untouched(result, tmp_path, before, f"{nuc} is the input {nuc}")
    os.link(nuc, tmp_path / "same.pt")
    before = snapshot(tmp_path)
    result = invoke("convert", nuc, tmp_path / "same.pt", "--force")
    assert_refused_untouched(result, tmp_path, before, "is the same file as the input", "choose another OUT")


def test_import_mlp_refuses_its_source_as_output(tmp_path):
    source = tmp_path / "500_model.pth"
    source.write_bytes(b"pickled MLP")
    (tmp_path / "out.safetensors").symlink_to(source)
    before = snapshot(tmp_path)
    result = invoke("models", "import-mlp", source, "-o", tmp_path / "out.safetensors", "--force")
    assert_refused_untouched(result, tmp_path, before, "is the same file as the input")


def test_plot_refuses_to_draw_over_its_input(tmp_path):
    pytest.importorskip("matplotlib")
    run = run_dir(tmp_path / "run")
    (run / "sequence_summary.tsv").write_text("sequence_id\n")
    (run / "prediction_results.txt").write_text("Sequence_ID\n")
    before = snapshot(tmp_path)
    result = invoke("plot", run, "-o", run / "sequence_summary.tsv", "--force")
    assert_refused_untouched(result, tmp_path, before, "is the input")


def test_aggregate_refuses_a_shard_file_as_log_file(tmp_path):
    shard = tmp_path / "s0"
    shard.mkdir()
    (shard / "shard.json").write_text("{}")
    before = snapshot(tmp_path)
    result = invoke("aggregate", shard, "-o", tmp_path / "out.h5", "--log-file", shard / "shard.json")
    assert_refused_untouched(result, tmp_path, before, "is the input")


# --------------------------------------------------------------------------- no file the run did not create is overwritten


def test_predict_refuses_a_folder_that_is_not_a_run_directory(tmp_path, fasta):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    (out / "sequence_summary.tsv").write_text("my own table")
    before = snapshot(tmp_path)
    for extra in ((), ("--resume",)):  # --resume would start a new run there just the same
        result = invoke("predict", fasta, "-o", out, *extra)
        assert_refused_untouched(result, tmp_path, before, f"{out} is not empty (chapter1.tex, sequence_summary.tsv) and is "
                                 "not a VirNucPro run directory; choose a new -o, or pass --force")


def test_predict_force_writes_into_a_foreign_folder_and_keeps_its_files(tmp_path, fasta, tiny_models):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    result = invoke("predict", fasta, "-o", out, "--models-dir", tiny_models, "--force", "-q")
    assert result.exit_code == 0, result.output
    assert (out / "chapter1.tex").read_text() == "years of work"
    assert (out / "sequence_summary.tsv").read_text().splitlines()[1].startswith("seq1\t")
    assert json.loads((out / "run.json").read_text())["status"] == "done"


def test_refuse_foreign_directory_ignores_the_log_file_and_a_killed_runs_temporaries(tmp_path):
    (tmp_path / "run.log").write_text("")
    (tmp_path / ".virnucpro.lock").write_text("{}")
    (tmp_path / ".run.json.abc123.part").write_text("")
    refuse_foreign_directory(tmp_path, force=False, ignore=(tmp_path / "run.log",))
    (tmp_path / "notes").write_text("")
    with pytest.raises(ConfigError, match=r"is not empty \(notes\)"):
        refuse_foreign_directory(tmp_path, force=False, ignore=(tmp_path / "run.log",))


def test_refuse_existing_names_force(tmp_path):
    (tmp_path / "a").write_text("")
    refuse_existing(tmp_path / "b", force=False)
    refuse_existing(tmp_path / "a", force=True)
    with pytest.raises(ConfigError, match=r"a exists; choose another -o or pass --force to replace it$"):
        refuse_existing(tmp_path / "a", force=False)


def test_classify_refuses_existing_results_unless_force(tmp_path):
    from virnucpro_core.testing import write_original_mlp

    mlp = write_original_mlp(tmp_path / "500_model.pth", input_dim=3328, hidden_dim=8, seed=1)
    out = tmp_path / "res"
    out.mkdir()
    (out / "prediction_results_highestscore.csv").write_text("someone else's")
    args = ["classify", "--nucleotide", REF / "output_1_DNABERT_S.pt", "--protein", REF / "output_1_ESM.pt", "--mlp", mlp, "-o", out]
    before = snapshot(tmp_path)
    assert_refused_untouched(invoke(*args), tmp_path, before, "prediction_results_highestscore.csv exists; choose another -o "
                             "or pass --force to replace it")
    forced = invoke(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert (out / "prediction_results_highestscore.csv").read_text().startswith("Modified_ID\tIs_Virus\n")


def test_merge_refuses_an_existing_output_unless_force(tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"precious")
    args = ["merge", REF / "output_1_DNABERT_S.pt", REF / "output_1_ESM.pt", "-o", out]
    before = snapshot(tmp_path)
    assert_refused_untouched(invoke(*args), tmp_path, before, f"{out} exists; choose another -o or pass --force")
    forced = invoke(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert out.read_bytes() != b"precious"


def test_import_mlp_refuses_existing_outputs_unless_force(tmp_path):
    from virnucpro_core.testing import write_original_mlp

    source = write_original_mlp(tmp_path / "500_model.pth", input_dim=64, hidden_dim=4, seed=1)
    (tmp_path / "500_model.json").write_text("my notes")
    before = snapshot(tmp_path)
    assert_refused_untouched(invoke("models", "import-mlp", source), tmp_path, before, "500_model.json exists")
    forced = invoke("models", "import-mlp", source, "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads((tmp_path / "500_model.json").read_text())["input_dim"] == 64


def test_plot_refuses_an_existing_plot_unless_force(tmp_path):
    pytest.importorskip("matplotlib")
    run = run_dir(tmp_path / "run")
    (run / "sequence_summary.tsv").write_text("x")
    (run / "prediction_results.txt").write_text("x")
    (run / "prediction.png").write_bytes(b"a figure I edited")
    before = snapshot(tmp_path)
    assert_refused_untouched(invoke("plot", run), tmp_path, before, "prediction.png exists; choose another -o or pass --force")


def test_embed_names_force_and_force_resume_does_not_replace_a_finished_output(tmp_path, fasta):
    out = tmp_path / "k.h5"
    assert invoke("embed", fasta, "--backend", "kmer", "-o", out, "-q").exit_code == 0
    first = out.read_bytes()
    before = snapshot(tmp_path)
    for extra in ((), ("--force-resume",)):
        assert_refused_untouched(invoke("embed", fasta, "--backend", "kmer", "-o", out, *extra), tmp_path, before,
                                 f"{out} exists; choose another -o or pass --force to replace it")
    forced = invoke("embed", fasta, "--backend", "kmer", "-o", out, "--force", "-q")
    assert forced.exit_code == 0, forced.output
    import h5py

    with h5py.File(out, "r") as f:
        assert [x.decode() for x in f["ids"][:]] == ["seq1"]
    assert len(out.read_bytes()) == len(first)


# --------------------------------------------------------------------------- -o /dev/null and other special files


@pytest.mark.parametrize("argv,message", [
    (["predict", "{fa}", "-o", "/dev/null"], "/dev/null is a device, not a directory; -o names the directory to write into"),
    (["prepare", "{fa}", "-o", "/dev/null"], "/dev/null is a device, not a directory; -o names the directory to write into"),
    (["embed", "{fa}", "--backend", "kmer", "--format", "hdf5", "-o", "/dev/null", "--force"],
     "/dev/null is a device, not a file this command can write; choose another -o"),
    (["merge", "{nuc}", "{nuc}", "-o", "/dev/null", "--force"], "/dev/null is a device, not a file this command can write"),
    (["convert", "{nuc}", "/dev/null", "--to", "hdf5", "--force"], "/dev/null is a device, not a file this command can write"),
])
def test_dev_null_as_output_is_named_for_what_it_is_and_never_replaced(tmp_path, fasta, argv, message):
    before = os.stat("/dev/null")
    args = [a.format(fa=fasta, nuc=REF / "output_1_DNABERT_S.pt") for a in argv]
    result = invoke(*args)
    assert result.exit_code == 2 and result.output.startswith(f"Error: {message}"), result.output
    after = os.stat("/dev/null")
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_a_log_file_may_be_dev_null(tmp_path, fasta):
    result = invoke("prepare", fasta, "-o", tmp_path / "prep", "--log-file", "/dev/null", "-q")
    assert result.exit_code == 0, result.output
