"""numba kernels: small pure functions over numpy arrays. Nothing else imports numba."""

from __future__ import annotations

import sys
from typing import Any

_BLAS_PROBE = "scipy.linalg.cython_blas"
# numba's cffi support builds a cffi.FFI (its C parser) when it first loads a kernel: 25 ms
# of every command where cffi is installed, for a feature no kernel here uses.
_CFFI = "cffi"
_HIDDEN = (_BLAS_PROBE, _CFFI)


def skip_blas_probe() -> None:
    """Let numba's one-time search for BLAS fail fast instead of importing scipy (and its
    cffi support find no cffi).

    The first time numba loads any compiled kernel it imports ``numba.np.arraymath``, which
    imports scipy's linear algebra to look for BLAS: 0.3 s of a command's start-up where
    scipy is installed. poolwatch's kernels use no BLAS, so a command can hide that module for
    the moment of the import. scipy stays importable afterwards; only numba's own ``np.dot``
    and ``np.linalg`` support (and cffi functions in kernels) is off in that process, so the
    library never does this itself.
    """
    if "numba.np.arraymath" in sys.modules:
        return
    hidden = [m for m in _HIDDEN if m not in sys.modules]
    for module in hidden:
        sys.modules[module] = None  # type: ignore[assignment]
    try:
        import numba.core.typing.cffi_utils  # noqa: F401
        import numba.np.arraymath  # noqa: F401
    finally:
        for module in hidden:
            del sys.modules[module]


def cold_cache(*kernels: Any) -> bool:
    """True when numba's on-disk cache holds no compiled code for one of ``kernels`` (numba
    dispatchers declared with ``cache=True``) that matches its source as it is now.

    Their first call then compiles them: tens of seconds for a command's kernels on a new
    install, which a command says before it looks hung. numba has no public call for this,
    so its cache object is read (``_cache``, the index numba itself would load); anything
    unexpected there counts as cached, so the worst case is a notice not shown.
    """
    for kernel in kernels:
        try:
            if not kernel._cache._cache_file._load_index():
                return True
        except Exception:  # noqa: BLE001 numba internals changed: say nothing, never fail
            return False
    return False
