"""Cache-line prefetch for the kernels that walk a capture (numba).

Walking pcap records is a chain of dependent loads: where record k+1 starts is known only
once record k's length has been read, so every record header that is not in the cache costs
a full memory latency, and the CPU's own prefetchers do not follow records of varying length.
On the benchmark machine that was 60 ns a record, nine tenths of the walk. Asking for the
lines a few kilobytes ahead, in order, while the walk goes on (``llvm.prefetch``: a hint that
never faults and never changes a result) brings that to ~12 ns.

These functions change no value, so the plain-Python references have nothing to mirror.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LINE = 64  # bytes of a cache line on the CPUs poolwatch runs on (x86-64, arm64)
AHEAD = 4096  # how far ahead of the walk lines are asked for (measured: 1-8 KiB all do)


@intrinsic
def prefetch(typingctx, arr, idx):
    """Hint the CPU to bring the cache line holding ``arr[idx]`` in, for reading."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]],
                                       wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read (0), keep in all cache levels (3), data cache (1)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


@njit(cache=True, nogil=True, inline="always")
def prefetch_ahead(buf, done, pos, end):
    """Prefetch the lines of ``buf`` from ``done`` up to ``pos + AHEAD`` (not past ``end``);
    returns the new ``done``. Called once per record with the record's position."""
    stop = min(pos + AHEAD, end)
    while done < stop:
        prefetch(buf, done)
        done += LINE
    return done
