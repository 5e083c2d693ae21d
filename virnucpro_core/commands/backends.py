"""``virnucpro backends``: what embedding backends (and formats) are installed."""

from __future__ import annotations

import json

import click


@click.command(name="backends")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
@click.option("-l", "--long", "verbose", is_flag=True, help="Also print each backend's description (attention, precision defaults, ...).")
@click.option("--all", "show_all", is_flag=True, help="Also list embedding formats and plugin load problems.")
def backends(as_json: bool, show_all: bool, verbose: bool) -> None:
    """List installed embedding backends: family, version, modality, output width, package, status.

    Select one with `--backend FAMILY=VERSION` on `embed` and `predict`; without it the
    newest available version of each family runs.

    \b
    Examples:
      virnucpro backends
      virnucpro backends -l                 # with descriptions and --backend-option keys
      virnucpro backends --json | jq '.[] | select(.available)'
    """
    from virnucpro_core.registry import get_registry

    registry = get_registry()
    rows = []
    for backend in registry.list_backends():
        reason = backend.unavailable_reason()
        rows.append(
            {
                "family": backend.family,
                "version": backend.version,
                "modality": backend.modality,
                "dim": backend.dim,
                "package": backend.package,
                "package_version": backend.package_version,
                "available": reason is None,
                "reason": reason,
                "description": backend.description,
                "default_model": backend.default_model,
                "options": [{"key": o.key, "help": o.help, "choices": list(o.choices)} for o in backend.options],
            }
        )
    conflicts = registry.conflicts()
    if as_json:
        if show_all:
            payload = {
                "backends": rows,
                "formats": [
                    {"name": f.name, "suffixes": list(f.suffixes), "package": f.package, "description": f.description}
                    for f in registry.list_formats()
                ],
                "problems": [str(p) for p in registry.problems],
            }
            click.echo(json.dumps(payload, indent=2))
        else:
            click.echo(json.dumps(rows, indent=2))
        return

    if not rows:
        click.echo("No embedding backends are installed. The published method needs:")
        click.echo("  pip install virnucpro-esm2-v1 virnucpro-dnabert-v1")
    else:
        header = ("BACKEND", "MODALITY", "DIM", "PACKAGE", "STATUS")
        table = [
            (
                f"{r['family']}={r['version']}",
                r["modality"],
                str(r["dim"]),
                f"{r['package']} {r['package_version']}".strip(),
                "available" if r["available"] else f"unavailable: {r['reason']}",
            )
            for r in rows
        ]
        widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header) - 1)]
        for row in [header, *table]:
            click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
        if verbose:
            for r, backend in zip(rows, registry.list_backends()):
                click.echo(f"\n{r['family']}={r['version']}: {r['description']}")
                for option in backend.options:
                    click.echo(f"  --backend-option {backend.family}:{option.describe()}")
    for (family, version), group in conflicts.items():
        names = " and ".join(sorted(b.package for b in group))
        click.echo(f"conflict: {family}={version} is registered by both {names}; uninstall one of them", err=True)
    if show_all:
        click.echo("\nFORMATS")
        for fmt in registry.list_formats():
            click.echo(f"  {fmt.name:<8} {' '.join(fmt.suffixes):<12} {fmt.package:<12} {fmt.description}")
    for problem in registry.problems:
        click.echo(f"warning: {problem}", err=True)
