"""Output folders of the experiments: never silently overwrite a previous run."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from keras_lincon.errors import LinconError


def prepare_output_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Creates ``path`` (if needed) and checks that the run may write there.

    Raises:
        LinconError: ``path`` is a file, holds files of an earlier run and
            ``overwrite`` is False, or cannot be created or written to.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise LinconError(f"output folder {out} is a file; choose another --out.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise LinconError(
            f"output folder {out} is not empty (an earlier run?); choose another --out "
            "or pass --overwrite to write over its files."
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise LinconError(
            f"cannot write to output folder {out}: {exc.strerror or exc}; choose another --out."
        ) from None
    return out


def fit_verbosity(verbose: int) -> int:
    """Keras ``fit`` verbosity: progress bars on a terminal, one line per epoch otherwise (logs)."""
    if not verbose:
        return 0
    return 1 if sys.stdout.isatty() else 2
