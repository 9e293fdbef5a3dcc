"""Every deprecated name in one place, each with the release that removes it.

Moved modules: ``import keras_lincon.<old>`` (or ``keras_lincon.<old>``
as an attribute) returns the module at its new home, under both names, with a
``DeprecationWarning``. Deprecated aliases of classes, keywords and constants
are listed in :data:`DEPRECATED_NAMES`; the code that adapts them lives
next to the names it adapts (``from_config`` for old layer configs).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

# old module under keras_lincon -> (its new home, the release that removes the old name)
MOVED_MODULES: dict[str, tuple[str, str]] = {
    # 0.1.0's modules
    "polyhedra": ("keras_lincon.geometry", "0.3.0"),
    "precision": ("keras_lincon.layers.precision", "0.3.0"),
    "projection": ("keras_lincon.baselines.projection", "0.3.0"),
    "serving": ("keras_lincon.export.serving", "0.3.0"),
    "distribute": ("keras_lincon.models.distribute", "0.3.0"),
    "datasets": ("keras_lincon.experiments.datasets", "0.3.0"),
    "experiment": ("keras_lincon.experiments.vae_study", "0.3.0"),
    "bench": ("keras_lincon.compat.bench", "0.3.0"),
    # named in 0.2.0's pre-release notes
    "scaled_layer": ("keras_lincon.compat.scaled_rows_constraint", "0.3.0"),
    "metrics": ("keras_lincon.layers.constraint_violation", "0.3.0"),
    "priors": ("keras_lincon.models.latent_prior", "0.3.0"),
    "deploy": ("keras_lincon.export.tflite", "0.3.0"),
    "coupled_projection": ("keras_lincon.compat.coupled_projection", "0.3.0"),
}

# deprecated name -> (what replaces it, the release that removes it)
DEPRECATED_NAMES: dict[str, tuple[str, str]] = {
    "keras_lincon.ScaledRowsConstraint": ("LinearInequalityConstraint(..., scaled_rows=...)", "0.3.0"),
    "ScaledRowsConstraint(center=)": ("box_center=", "0.3.0"),
    "keras_lincon.layers.BOX_SCALINGS": ("keras_lincon.layers.SCALINGS", "0.3.0"),
}

_PREFIX = "keras_lincon."


def moved_module_warning(old: str) -> str:
    """The message for a moved module ``old`` (its name under ``keras_lincon``)."""
    new, removal = MOVED_MODULES[old]
    return f"keras_lincon.{old} moved to {new} and is removed in {removal}; update the import."


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``keras_lincon.<old>`` for the modules in :data:`MOVED_MODULES` and
    loads it as the module at its new home (one object under both names, so
    monkeypatching either one works)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(_PREFIX) and fullname[len(_PREFIX) :] in MOVED_MODULES:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return None  # a plain module, replaced in exec_module

    def exec_module(self, module):
        old = module.__name__[len(_PREFIX) :]
        warnings.warn(moved_module_warning(old), DeprecationWarning, stacklevel=2)
        # the import system returns whatever sys.modules holds after exec_module
        sys.modules[module.__name__] = importlib.import_module(MOVED_MODULES[old][0])


def install() -> None:
    """Puts one :class:`MovedModuleFinder` at the end of ``sys.meta_path`` (idempotent)."""
    if not any(type(f).__name__ == "MovedModuleFinder" for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
