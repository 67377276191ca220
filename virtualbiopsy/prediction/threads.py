"""One BLAS/OpenMP thread for the many small fits of model training, explanation and scoring."""

from __future__ import annotations

import functools


def single_threaded(function):
    """Run ``function`` with one BLAS/OpenMP thread: these problems are small, and on a shared or
    busy CPU multi-threaded BLAS makes each tiny fit many times slower (measured 7x on 2 cores)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return function(*args, **kwargs)

    return wrapper
