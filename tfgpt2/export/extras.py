"""The optional libraries an export format needs, checked before any work starts."""

import importlib.util


def require(modules, what, install):
    """ImportError "`what` needs X, Y: `install`" for the `modules` that are not installed (found, not imported)."""

    def absent(name):
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):  # a broken or blocked install
            return True

    missing = [m for m in modules if absent(m)]
    if missing:
        raise ImportError(f"{what} needs {', '.join(missing)}: {install}")
