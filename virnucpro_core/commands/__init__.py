"""One module per CLI subcommand; see :mod:`virnucpro_core.cli`."""
