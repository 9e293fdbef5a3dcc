"""Fails when more than one TensorFlow distribution is installed.

`tensorflow` and `tensorflow-cpu` (or -gpu, -intel, ...) install into the same
`tensorflow/` folder: with two of them, uninstalling or upgrading either one
breaks the other. Prints the TensorFlow distributions found; exit status 1
when there are several.
"""

import importlib.metadata as md
import re
import sys

# Distributions that provide the `tensorflow` package itself (not TFP, tf-keras, ...).
TF_DIST = re.compile(r"^(tensorflow|tensorflow[-_](cpu|gpu|intel|macos|aarch64|rocm)|tf[-_]nightly.*)$")


def tf_distributions() -> list[str]:
    names = {d.metadata["Name"].lower().replace("_", "-") for d in md.distributions()}
    return sorted(n for n in names if TF_DIST.match(n))


if __name__ == "__main__":
    found = tf_distributions()
    print("TensorFlow distributions:", ", ".join(found) or "none")
    if len(found) > 1:
        print(
            "More than one TensorFlow distribution shares the `tensorflow` folder; "
            "uninstall all of them, then install one (`make clean setup` does it).",
            file=sys.stderr,
        )
        sys.exit(1)
