"""numba kernels: small pure functions over numpy arrays. Nothing else imports numba."""

from __future__ import annotations

import sys

_BLAS_PROBE = "scipy.linalg.cython_blas"


def skip_blas_probe() -> None:
    """Let numba's one-time search for BLAS fail fast instead of importing scipy.

    The first time numba loads any compiled kernel it imports ``numba.np.arraymath``, which
    imports scipy's linear algebra to look for BLAS: 0.3 s of a command's start-up where
    scipy is installed. poolwatch's kernels use no BLAS, so a command can hide that module for
    the moment of the import. scipy stays importable afterwards; only numba's own ``np.dot``
    and ``np.linalg`` support is off in that process, so the library never does this itself.
    """
    if "numba.np.arraymath" in sys.modules:
        return
    hidden = _BLAS_PROBE not in sys.modules
    if hidden:
        sys.modules[_BLAS_PROBE] = None  # type: ignore[assignment]
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if hidden:
            del sys.modules[_BLAS_PROBE]
