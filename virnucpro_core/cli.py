"""The ``virnucpro`` command line.

Subcommands live in :mod:`virnucpro_core.commands`, one module each, and are imported
only when used or listed, so ``virnucpro --help`` stays fast. Plugins add commands
through the ``register_commands`` hook. Every :class:`VirnucproError` becomes a
one-line ``Error: ...`` and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from virnucpro_core import __version__
from virnucpro_core.errors import VirnucproError

ARGV_KEY = "virnucpro.argv"

#: command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "predict": "virnucpro_core.commands.predict:predict",
    "prepare": "virnucpro_core.commands.prepare:prepare",
    "validate": "virnucpro_core.commands.validate:validate",
    "embed": "virnucpro_core.commands.embed:embed",
    "merge": "virnucpro_core.commands.merge:merge",
    "classify": "virnucpro_core.commands.classify:classify",
    "aggregate": "virnucpro_core.commands.aggregate:aggregate",
    "convert": "virnucpro_core.commands.convert:convert",
    "backends": "virnucpro_core.commands.backends:backends",
    "models": "virnucpro_core.commands.models:models",
    "plot": "virnucpro_core.commands.plot:plot",
}


class VirnucproGroup(click.Group):
    """A group whose built-in commands load lazily and whose errors are one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(self.commands) | {n for n in COMMANDS if self._importable(n)}
        order = list(COMMANDS)
        return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))

    def _importable(self, name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module) is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS and name not in self.commands:
            module_name, attr = COMMANDS[name].split(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name == module_name:
                    return None
                raise
            self.commands[name] = getattr(module, attr)
        return self.commands.get(name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV_KEY] = list(args)  # the user's own command, for the hint after an interruption
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        from virnucpro_core.engine.stop import RunInterrupted, interrupted_line

        try:
            return super().invoke(ctx)
        except RunInterrupted as exc:
            _last_line(interrupted_line(exc, ctx.meta.get(ARGV_KEY, [])))
            ctx.exit(exc.exit_code)
        except VirnucproError as exc:
            _last_line(f"Error: {exc}")
            ctx.exit(exc.exit_code)
        except OSError as exc:  # a path we cannot write or read: one line, not a traceback
            where = exc.filename or "a file"
            _last_line(f"Error: {where}: {exc.strerror or exc}; check the path, its permissions and free disk space")
            ctx.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception:  # a bug: the traceback goes on the terminal (Python's) and into --log-file
            import logging

            from virnucpro_core.logs import FILE_ONLY

            if any(getattr(handler, "_virnucpro", False) for handler in logging.getLogger().handlers):
                logging.getLogger("virnucpro_core.cli").exception("unexpected error; please report it with this log",
                                                                  extra=FILE_ONLY)
            raise


def command_line(prog: str = "virnucpro") -> str | None:
    """The command being run, as the user typed it after the program name (for ``run.json``)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ARGV_KEY not in ctx.meta:
        return None
    import shlex

    return shlex.join([prog, *ctx.meta[ARGV_KEY]])


def _last_line(line: str) -> None:
    """The line that ends the run: on stderr, and as the last line of ``--log-file`` (where one is open)."""
    import logging

    from virnucpro_core.logs import FILE_ONLY

    click.echo(line, err=True)
    if any(getattr(handler, "_virnucpro", False) for handler in logging.getLogger().handlers):  # else logging's
        logging.getLogger("virnucpro_core.cli").error("%s", line, extra=FILE_ONLY)            # last resort prints it again


@click.group(cls=VirnucproGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="virnucpro")
def cli() -> None:
    """VirNucPro: find viral sequences in DNA reads and contigs.

    Each input sequence is cut into 300 or 500 bp chunks, every chunk is translated
    in six frames, frames without a stop codon are embedded with DNABERT-S
    (nucleotides) and ESM-2 3B (protein), and an MLP scores them.

    \b
    Typical use:
      virnucpro predict contigs.fa -o results/          # the whole pipeline
      virnucpro backends                                # installed embedding backends
      virnucpro models init-tiny models/ && virnucpro predict contigs.fa -o out --models-dir models/
                                                        # smoke run with tiny random models

    Run `virnucpro COMMAND --help` for the options of each command.
    """


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    from virnucpro_core.registry import get_registry

    try:
        get_registry().register_commands(cli)
    except VirnucproError as exc:  # strict plugin mode
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    cli.main(args=argv, prog_name="virnucpro")
