"""``--backend-option [FAMILY:]KEY=VALUE``: which backend of a run gets which setting.

``predict`` runs two backends at once, and several have a setting of the same name with
different values (``attention``: ``sdpa-bucketed`` for ``esm2=v2``, ``sdpa`` for
``dnabert=v2``, ``torch`` for ``dnabert=v1``). So an option names its backend family
(``esm2:attention=sdpa-bucketed``), or, without a family, goes to every backend of the run
that declares the key (``Backend.options``). A key no backend of the run declares, a family
that is not in the run, or a value outside a declared option's choices is a one-line error
before any stage, naming the backends and what they take. A backend only ever receives the
keys it declares; a family's own option wins over an unprefixed one of the same key.

Options are kept as ``(NAME, VALUE)`` pairs where NAME is ``KEY`` or ``FAMILY:KEY``, the
form the user wrote, so manifests and run identities record exactly what was asked.
Everything here works on descriptors: no backend code is imported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from virnucpro_core.backends import Backend
from virnucpro_core.errors import ConfigError

_NAME = re.compile(r"^(?:([a-z][a-z0-9_]*):)?([a-z][a-z0-9_-]*)$")
EXAMPLE = "--backend-option esm2:attention=sdpa-bucketed"


def split_name(name: str) -> tuple[str | None, str]:
    """``"esm2:attention"`` → ``("esm2", "attention")``; ``"attention"`` → ``(None, "attention")``."""
    match = _NAME.match(name)
    if not match:
        raise ConfigError(f"--backend-option {name!r}: expected [FAMILY:]KEY=VALUE in lower case, e.g. {EXAMPLE}")
    return match.group(1), match.group(2)


def parse_backend_option_values(values: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``("esm2:attention=sdpa-bucketed", "k=3")`` → ``(("esm2:attention", "sdpa-bucketed"), ("k", "3"))``.

    A malformed item, or a name given twice with different values, is a ConfigError.
    """
    pairs: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ConfigError(f"--backend-option {item!r}: expected [FAMILY:]KEY=VALUE, e.g. {EXAMPLE}")
        split_name(name)
        if name in pairs and pairs[name] != value:
            raise ConfigError(f"--backend-option gives {name}={pairs[name]} and {name}={value}; give one")
        pairs[name] = value
    return tuple(pairs.items())


def from_config(table_value: Any, source: str) -> tuple[tuple[str, str], ...]:
    """The ``backend_options`` of a TOML ``[runtime]`` table, in any of its three spellings::

        backend_options = ["esm2:attention=sdpa-bucketed", "k=3"]
        backend_options = {"esm2:attention" = "sdpa-bucketed", k = "3"}
        [runtime.backend_options.esm2]
        attention = "sdpa-bucketed"
    """
    if isinstance(table_value, list) and all(isinstance(item, str) for item in table_value):
        return parse_backend_option_values(table_value)
    if isinstance(table_value, dict):
        items: list[str] = []
        for name, value in table_value.items():
            if isinstance(value, dict):  # a family's own table
                items += [f"{name}:{key}={_scalar(inner, source)}" for key, inner in value.items()]
            else:
                items.append(f"{name}={_scalar(value, source)}")
        return parse_backend_option_values(items)
    raise ConfigError(f"{source}: [runtime] backend_options must be a list such as [\"esm2:attention=sdpa-bucketed\"] "
                      "or a table such as {\"esm2:attention\" = \"sdpa-bucketed\"}")


def _scalar(value: Any, source: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{source}: [runtime] backend_options values must be strings or numbers, not {value!r}")
    return str(value)


def merge(first: Sequence[tuple[str, str]], then: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``first`` (a config file's) overridden name by name by ``then`` (the command line's)."""
    merged = dict(first)
    merged.update(then)
    return tuple(merged.items())


def options_for(backend: Backend, pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The options ``backend`` receives: the keys it declares, given for its family or for all."""
    chosen: dict[str, str] = {}
    for family in (None, backend.family):  # the family's own option wins
        for name, value in pairs:
            prefix, key = split_name(name)
            if prefix == family and backend.option(key) is not None:
                chosen[key] = value
    return chosen


def _offer(backend: Backend) -> str:
    if not backend.options:
        return f"{backend.key} takes no backend options"
    return f"{backend.key} takes " + ", ".join(f"{option.key}={'|'.join(option.choices) or 'VALUE'}" for option in backend.options)


def check_routing(pairs: Sequence[tuple[str, str]], backends: Sequence[Backend]) -> None:
    """Refuse, in one line, any option no backend of the run can take (see the module docstring)."""
    families = {backend.family: backend for backend in backends}
    for name, value in pairs:
        family, key = split_name(name)
        if family is not None:
            backend = families.get(family)
            if backend is None:
                raise ConfigError(f"--backend-option {name}={value}: no {family} backend in this run "
                                  f"(it runs {', '.join(b.key for b in backends)})")
            if backend.option(key) is None:
                raise ConfigError(f"--backend-option {name}={value}: {backend.key} has no option {key}; {_offer(backend)}")
            continue
        takers = [backend for backend in backends if backend.option(key) is not None]
        if not takers:
            offers = "; ".join(_offer(backend) for backend in backends)
            raise ConfigError(f"--backend-option {name}={value}: no backend of this run takes {key} ({offers})")
        refusing = [b for b in takers if b.option(key).choices and value not in b.option(key).choices
                    and f"{b.family}:{key}" not in dict(pairs)]
        if refusing:
            accepting = [b for b in takers if b not in refusing]
            allowed = "; ".join(f"{b.key} takes {key}={'|'.join(b.option(key).choices)}" for b in refusing)
            hint = (f"; to give it to {' and '.join(b.key for b in accepting)} only, write "
                    + " ".join(f"--backend-option {b.family}:{key}={value}" for b in accepting)) if accepting else ""
            raise ConfigError(f"--backend-option {name}={value} goes to every backend that takes {key} "
                              f"({', '.join(b.key for b in takers)}), but {allowed}{hint}")
