"""Vectorisable building blocks for the numba CPU kernels.

Everything here is a plain ``numba.njit`` function (``inline="always"`` where it sits
in a hot loop) so that LLVM sees straight-line, branch-free code it can vectorise.

- ``FASTMATH``: the fast-math flag set the kernels use. Never ``nnan``/``ninf``:
  masked logits are ``-inf`` and must stay so.
- Small ``numba.extending.intrinsic`` wrappers around LLVM intrinsics:
  ``maxnum``/``minnum`` (``llvm.maxnum``/``llvm.minnum``: vectorise, unlike numba's
  ``max`` which lowers to compare+branch), ``fmuladd``/``fmuladd32`` (``llvm.fmuladd``
  in float64/float32: one FMA where the CPU has it), ``rint``/``floor`` (``llvm.rint``/``llvm.floor``), ``mul_strict`` (an ``fmul`` that
  the fast-math pass leaves without ``reassoc``), ``i64_as_f64``/``f64_as_i64``/
  ``f32_as_u32`` (bit casts).
- ``row_max(x)``: the largest element of a 1-D float32/float64 array (``-inf`` for an
  all ``-inf`` or empty row), a vectorised ``llvm.maxnum`` reduction.
- ``exp64(x)``: branch-free float64 ``exp``; ``exp_f32acc(x)``: a cheaper float64
  ``exp`` accurate enough for results that are rounded to float32; ``exp64_neg(x)``:
  ``exp64`` for ``x <= 0``, bit for bit, with fewer operations.
- ``exp_store_sum``/``exp_store_sum_ge``/``exp_sum_ge``/``exp_sum_ge_temp``: whole-range
  exp passes over ``<8 x double>`` (512-bit code on AVX-512 CPUs), the same weights as
  ``exp64_neg``.

Accuracy (measured by ``tests/test_numba_core.py`` against ``np.exp``):

- ``exp64``: over ``-708 <= x <= 0`` (and up to 709) the relative error is at most
  1 ulp (measured 2.2e-16 on a 2M-point grid; polynomial error 1.7e-17 plus the
  rounding of the last FMA steps; the documented bound ``EXP64_MAX_REL_ERR`` is 2 ulp). In the subnormal range (x < -708.4) the result is
  the correctly scaled value with one rounding, i.e. within 1 unit of the last
  subnormal place. ``x <= -746`` and ``-inf`` give exactly 0; NaN gives 0 (kernels
  never pass NaN); ``x >= 710`` and ``+inf`` give ``+inf``.
- ``exp_f32acc``: relative error below 3e-10 (degree-7 polynomial) for results
  above 2**-1022 (x >= -708.39); below that the result is 0 or a subnormal that is
  not accurate (irrelevant once rounded to float32); ``x <= -708.9`` and ``-inf``
  give exactly 0, ``x >= 710`` gives ``+inf``. Use it where the result is rounded to float32
  (softmax, log-softmax), never for the draw's weights.

Why the intrinsics: ``FASTMATH`` contains ``reassoc`` (needed to vectorise float
sums), and numba applies a kernel's flags to every inlined helper. With ``reassoc``
LLVM may fold the Cody-Waite reduction ``(x - k*ln2_hi) - k*ln2_lo`` into
``x - k*ln2`` (losing ~11 bits) or merge the two scale multiplications (underflow).
Intrinsic calls (``fmuladd``, ``rint``) and ``fmul``s that already carry a flag are
opaque to those rewrites, so the exp is exact-by-construction under any flag set
(as long as it has no ``nnan``/``ninf``).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = [
    "EXP64_MAX_REL_ERR",
    "EXP_F32ACC_MAX_REL_ERR",
    "FASTMATH",
    "exp64",
    "exp64_neg",
    "exp_f32acc",
    "exp_store_sum",
    "exp_store_sum_ge",
    "exp_sum_ge",
    "exp_sum_ge_temp",
    "f32_as_u32",
    "f64_as_i64",
    "floor",
    "fmuladd",
    "fmuladd32",
    "i64_as_f64",
    "maxnum",
    "minnum",
    "mul_strict",
    "rint",
    "row_max",
]

#: Fast-math flags for the kernels: no ``nnan``/``ninf`` (kernels see ``-inf``).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: Documented bounds (checked by the tests against ``np.exp``).
EXP64_MAX_REL_ERR = 4.5e-16
EXP_F32ACC_MAX_REL_ERR = 3e-10


# ---------------------------------------------------------------------------------
# intrinsics

def _float_ty(a, b):
    if a == types.float32 and b == types.float32:
        return types.float32
    return types.float64


def _binary_intrinsic(name):
    def impl(typingctx, a, b):
        if not (isinstance(a, (types.Float, types.Integer))
                and isinstance(b, (types.Float, types.Integer))):
            return None
        ty = _float_ty(a, b)

        def codegen(context, builder, signature, args):
            lty = context.get_value_type(ty)
            va = context.cast(builder, args[0], signature.args[0], ty)
            vb = context.cast(builder, args[1], signature.args[1], ty)
            fn = builder.module.declare_intrinsic(
                name, [lty], ir.FunctionType(lty, [lty, lty]))
            return builder.call(fn, [va, vb])

        return ty(a, b), codegen
    return impl


maxnum = intrinsic(_binary_intrinsic("llvm.maxnum"))
maxnum.__doc__ = "llvm.maxnum: the larger of two floats (float32 if both are)."
minnum = intrinsic(_binary_intrinsic("llvm.minnum"))
minnum.__doc__ = "llvm.minnum: the smaller of two floats (float32 if both are)."
maximum = intrinsic(_binary_intrinsic("llvm.maximum"))
maximum.__doc__ = (
    "llvm.maximum: the larger of two floats, NaN if either is NaN (IEEE 754-2019); "
    "vectorises like maxnum, so a max pass can double as the NaN check."
)


@intrinsic
def fmuladd(typingctx, a, b, c):
    """``a * b + c`` via ``llvm.fmuladd.f64`` (one FMA where the CPU has it)."""
    f64 = types.float64

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        vals = [context.cast(builder, v, t, f64) for v, t in zip(args, signature.args)]
        fn = builder.module.declare_intrinsic(
            "llvm.fmuladd", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, vals)

    return f64(a, b, c), codegen


@intrinsic
def fmuladd32(typingctx, a, b, c):
    """``a * b + c`` in float32 via ``llvm.fmuladd.f32`` (one FMA where the CPU has it;
    elementwise loops of it vectorise)."""
    f32 = types.float32

    def codegen(context, builder, signature, args):
        f = ir.FloatType()
        vals = [context.cast(builder, v, t, f32) for v, t in zip(args, signature.args)]
        fn = builder.module.declare_intrinsic(
            "llvm.fmuladd", [f], ir.FunctionType(f, [f, f, f]))
        return builder.call(fn, vals)

    return f32(a, b, c), codegen


def _unary_f64_intrinsic(name):
    def impl(typingctx, a):
        f64 = types.float64

        def codegen(context, builder, signature, args):
            v = context.cast(builder, args[0], signature.args[0], f64)
            fn = builder.module.declare_intrinsic(name, [ir.DoubleType()])
            return builder.call(fn, [v])

        return f64(a), codegen
    return impl


rint = intrinsic(_unary_f64_intrinsic("llvm.rint"))
rint.__doc__ = "Round to the nearest integer (ties to even) as float64, ``llvm.rint.f64``."
floor = intrinsic(_unary_f64_intrinsic("llvm.floor"))
floor.__doc__ = "float64 floor via ``llvm.floor.f64`` (vectorises to vroundpd)."


def _strict_f64_intrinsic(op):
    """float64 ``a <op> b`` that keeps IEEE semantics under FASTMATH.

    numba's fast-math pass skips instructions that already carry a flag, so one
    harmless flag (``nsz``) keeps ``reassoc``/``arcp`` off this operation.
    """
    def impl(typingctx, a, b):
        f64 = types.float64

        def codegen(context, builder, signature, args):
            va = context.cast(builder, args[0], signature.args[0], f64)
            vb = context.cast(builder, args[1], signature.args[1], f64)
            res = getattr(builder, op)(va, vb)
            res.flags.append("nsz")
            return res

        return f64(a, b), codegen
    return impl


mul_strict = intrinsic(_strict_f64_intrinsic("fmul"))
mul_strict.__doc__ = "float64 ``a * b`` with IEEE semantics (no reassociation) under FASTMATH."
div_strict = intrinsic(_strict_f64_intrinsic("fdiv"))
div_strict.__doc__ = "float64 ``a / b`` with IEEE semantics (no ``arcp``) under FASTMATH."


def _bitcast_intrinsic(src, dst, dst_ir):
    """Reinterpret the bits of a ``src`` value as ``dst`` (same width)."""
    def impl(typingctx, a):
        def codegen(context, builder, signature, args):
            v = context.cast(builder, args[0], signature.args[0], src)
            return builder.bitcast(v, dst_ir)

        return dst(a), codegen
    return impl


f64_as_i64 = intrinsic(_bitcast_intrinsic(types.float64, types.int64, ir.IntType(64)))
f64_as_i64.__doc__ = "Reinterpret the bits of a float64 as an int64."
f32_as_u32 = intrinsic(_bitcast_intrinsic(types.float32, types.uint32, ir.IntType(32)))
f32_as_u32.__doc__ = "Reinterpret the bits of a float32 as a uint32."
i64_as_f64 = intrinsic(_bitcast_intrinsic(types.int64, types.float64, ir.DoubleType()))
i64_as_f64.__doc__ = "Reinterpret the bits of an int64 as a float64."


# ---------------------------------------------------------------------------------
# max

@numba.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def row_max(x):
    """Largest element of a 1-D float array; ``-inf`` if empty or all ``-inf``.

    float32 for float32 input, float64 for float64 input. A plain ``llvm.maxnum``
    reduction, which LLVM vectorises (8 lanes x several accumulators on AVX2); on a
    128256-float row it runs at ``np.max`` speed. NaN entries are ignored (maxnum
    semantics; kernels never see NaN). Signed zeros: either may be returned.
    """
    m = np.float32(-np.inf)
    for i in range(x.shape[0]):
        m = maxnum(m, x[i])
    return m


# ---------------------------------------------------------------------------------
# exp

_LOG2E = 1.4426950408889634
# fdlibm's split of ln 2: LN2_HI has 21 trailing zero bits, so k * LN2_HI is exact
# for |k| < 2**21 even without an FMA.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_X_LO = -746.0   # exp(-746) < 2**-1075: rounds to 0
_X_HI = 710.0    # exp(710) > DBL_MAX: +inf

# exp(r) ~ 1 + r + r^2 q(r) on |r| <= ln2/2; q fitted at Chebyshev nodes in long
# double, coefficients rounded to float64; max approximation error 1.7e-17.
_Q0 = 0.5000000000000001
_Q1 = 0.16666666666666688
_Q2 = 0.041666666666623435
_Q3 = 0.008333333333315228
_Q4 = 0.00138888889173673
_Q5 = 0.0001984126989789423
_Q6 = 2.48015211589338e-05
_Q7 = 2.7557235270934193e-06
_Q8 = 2.762013114990759e-07
_Q9 = 2.5111436444123087e-08

# Degree-7 variant (q of degree 5): max approximation error 2.2e-10.
_S0 = 0.500000001346581
_S1 = 0.16666666681623232
_S2 = 0.041666464925285876
_S3 = 0.00833331092548064
_S4 = 0.0013933649996311452
_S5 = 0.0001989099082480971


@numba.njit(cache=True, nogil=True, inline="always")
def _reduce(x):
    """Clamp, split x = k ln2 + r; returns (k as float, r)."""
    x = minnum(maxnum(x, _X_LO), _X_HI)  # also maps -inf -> -746 (-> 0), NaN -> -746
    k = rint(x * _LOG2E)
    r = fmuladd(k, -_LN2_HI, x)
    r = fmuladd(k, -_LN2_LO, r)
    return k, r


# 1.5 * 2**52 + 1023: adding an integer j (|j| < 2**50) to it puts 1023 + j in the
# low bits of the result, exactly (float -> int without cvttpd2qq, which AVX2 lacks).
_EXP_MAGIC = 6755399441055744.0 + 1023.0


@numba.njit(cache=True, nogil=True, inline="always")
def _pow2(kf):
    """2.0**kf for an integer-valued float kf in [-1022, 1023] (bit manipulation).

    kf = -1023 gives 0.0 and kf = 1024 gives +inf (the exponent field wraps to 0 / 2047).
    """
    return i64_as_f64(f64_as_i64(kf + _EXP_MAGIC) << 52)


@numba.njit(cache=True, nogil=True, inline="always")
def _scale(p, k):
    """p * 2**k for an integer-valued float k in [-1077, 1025], one rounding."""
    k1 = floor(k * 0.5)   # both halves within the normal exponent range
    k2 = k - k1
    return mul_strict(mul_strict(p, _pow2(k1)), _pow2(k2))


@numba.njit(cache=True, nogil=True, inline="always")
def exp64(x):
    """Branch-free float64 exp, ~1 ulp (see the module docstring)."""
    k, r = _reduce(x)
    q = fmuladd(_Q9, r, _Q8)
    q = fmuladd(q, r, _Q7)
    q = fmuladd(q, r, _Q6)
    q = fmuladd(q, r, _Q5)
    q = fmuladd(q, r, _Q4)
    q = fmuladd(q, r, _Q3)
    q = fmuladd(q, r, _Q2)
    q = fmuladd(q, r, _Q1)
    q = fmuladd(q, r, _Q0)
    p = fmuladd(mul_strict(r, r), q, r) + 1.0
    return _scale(p, k)


_X_LO_F32ACC = -709.0  # k = -1023: the exponent field is 0, the result exactly 0


@numba.njit(cache=True, nogil=True, inline="always")
def exp_f32acc(x):
    """Branch-free float64 exp with relative error < 3e-10 (for float32 results).

    Cheaper than ``exp64``: degree-7 polynomial and a single 2**k scale, so results
    below 2**-1022 (x < -708.4) are not accurate (subnormal or 0; exactly 0 for
    x <= -708.9 and for -inf).
    """
    x = minnum(maxnum(x, _X_LO_F32ACC), _X_HI)
    k = rint(x * _LOG2E)
    r = fmuladd(k, -_LN2_HI, x)
    r = fmuladd(k, -_LN2_LO, r)
    q = fmuladd(_S5, r, _S4)
    q = fmuladd(q, r, _S3)
    q = fmuladd(q, r, _S2)
    q = fmuladd(q, r, _S1)
    q = fmuladd(q, r, _S0)
    p = fmuladd(mul_strict(r, r), q, r) + 1.0
    return mul_strict(p, _pow2(k))


# Convenience array versions (tests, benchmarks).

@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def exp64_array(x):
    """``exp64`` over a 1-D float64 array (new array)."""
    out = np.empty(x.shape[0], np.float64)
    for i in range(x.shape[0]):
        out[i] = exp64(x[i])
    return out


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def exp_f32acc_array(x):
    """``exp_f32acc`` over a 1-D float64 array (new array)."""
    out = np.empty(x.shape[0], np.float64)
    for i in range(x.shape[0]):
        out[i] = exp_f32acc(x[i])
    return out


@numba.njit(cache=True, nogil=True)
def row_max_array(x):
    """``row_max`` as a standalone callable (tests, benchmarks)."""
    return row_max(x)


# ---------------------------------------------------------------------------------
# mask compares (top-k gather)

def _mask8_intrinsic(ordered, doc):
    """An intrinsic ``(arr, i, thr) -> int64``: bit b set where ``arr[i + b] >= thr``
    (b < 8) under an ordered (``oge``) or unordered (``uge``) compare.

    One unaligned 8-lane load, the compare against a splat of ``thr`` and a bitcast of
    the 8 x i1 result (AVX2: vcmpps + vmovmskps). No bounds check: the caller guarantees
    ``0 <= i`` and ``i + 8 <= len(arr)``. ``arr``: C-contiguous 1-D float32; ``thr``:
    float32. Two such masks of one block share its load (LLVM merges them).
    """
    compare = ir.IRBuilder.fcmp_ordered if ordered else ir.IRBuilder.fcmp_unordered

    def mask8(typingctx, arr, i, thr):
        if not _is_f32_c1d(arr):
            return None

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            idx = context.cast(builder, args[1], signature.args[1], types.intp)
            t = context.cast(builder, args[2], signature.args[2], types.float32)
            vty = ir.VectorType(ir.FloatType(), 8)
            ptr = builder.gep(ary.data, [idx])
            vec = builder.load(builder.bitcast(ptr, vty.as_pointer()), align=4)
            cmp = compare(builder, ">=", vec, _splat_var(builder, vty, t))
            return builder.zext(builder.bitcast(cmp, ir.IntType(8)), ir.IntType(64))

        return types.int64(arr, i, thr), codegen

    mask8.__doc__ = doc
    return intrinsic(mask8)


_ge_mask8 = _mask8_intrinsic(True, """Bits of ``arr[i:i+8] >= thr`` (ordered: a NaN entry or
    NaN ``thr`` gives 0). Used by ``kernels/cpu/topk.py`` to gather entries above a threshold.""")
_uge_mask8 = _mask8_intrinsic(False, """Bits of ``arr[i:i+8] >= thr`` or unordered: with
    ``thr = +inf``, the NaN and +inf entries (topk's validity check within its gather).""")


@intrinsic
def _cttz(typingctx, x):
    """Trailing zero bits of a nonzero int64 (``llvm.cttz`` with zero-is-poison: one
    tzcnt/bsf). The result is undefined for 0; visit set bits of a mask with
    ``i = _cttz(m); m &= m - 1`` while ``m`` is nonzero."""
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fn = builder.module.declare_intrinsic(
            "llvm.cttz", [i64], ir.FunctionType(i64, [i64, ir.IntType(1)]))
        return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 1)])

    return types.int64(types.int64), codegen


# ---------------------------------------------------------------------------------
# exp for non-positive arguments

_X_LO_NEG = -746.0       # exp(-746) < 2**-1075: rounds to 0 (as in exp64)
_X_ZERO = -745.2         # exp(x) < 0.94 * 2**-1075 below it: rounds to 0 too
_TWO_M54 = 2.0 ** -54    # undoes the +54 exponent bias of exp64_neg's scale


@intrinsic
def max_ordered(typingctx, a, b):
    """float64 ``a if a > b else b`` (one ``vmaxpd``; NaN in ``a`` gives ``b``): an
    ordered compare and a select, unchanged by ``FASTMATH`` (no ``nnan``/``ninf``).
    Cheaper than maxnum, whose NaN rule costs extra instructions on x86."""
    f64 = types.float64

    def codegen(context, builder, signature, args):
        va = context.cast(builder, args[0], signature.args[0], f64)
        vb = context.cast(builder, args[1], signature.args[1], f64)
        gt = builder.fcmp_ordered(">", va, vb)
        return builder.select(gt, va, vb)

    return f64(a, b), codegen


def _ftype_intrinsic(builder, base, ty, nargs):
    """Declare ``llvm.<base>`` overloaded on the float64 scalar or vector type ``ty``."""
    suffix = f"v{ty.count}f64" if isinstance(ty, ir.VectorType) else "f64"
    fnty = ir.FunctionType(ty, [ty] * nargs)
    return cgutils.get_or_insert_function(builder.module, fnty, f"llvm.{base}.{suffix}")


def _const(ty, value):
    """A constant of the scalar or vector type ``ty`` (splat for a vector type)."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [value] * ty.count)
    return ir.Constant(ty, value)


def _strict(instr):
    """Give an instruction ``nsz`` so numba's fast-math pass leaves it IEEE (see
    ``mul_strict``)."""
    instr.flags.append("nsz")
    return instr


def _emit_exp64_neg(builder, x):
    """Emit the IR of ``exp64_neg`` for a float64 scalar or ``<n x double>`` ``x``.

    The one definition of the operation sequence: the scalar ``exp64_neg`` and the
    vector passes (``exp_sum_ge``, ...) are both built from it, so they agree bit for
    bit lane by lane. Each step is the scalar helper it mirrors: an ordered
    compare-select clamp (``max_ordered``), ``llvm.rint``/``llvm.fmuladd`` calls and
    ``nsz``-flagged ``fmul``s (``mul_strict``), all opaque to ``FASTMATH``'s
    reassociation (see the module docstring).
    """
    ty = x.type
    c = lambda v: _const(ty, v)
    fma = _ftype_intrinsic(builder, "fmuladd", ty, 3)
    # Below _X_ZERO the result is 0 (it rounds to 0 through the scale's subnormal
    # multiply, which costs a microcode assist per instruction on some CPUs): such
    # lanes compute exp(0) instead and select 0 at the end. A row spanning more than
    # 745 nats (a low temperature, Smoothing) has most of its tokens there.
    dead = builder.fcmp_ordered("<", x, c(_X_ZERO))   # -inf too; NaN: no (-> the clamp)
    x = builder.select(dead, c(0.0), x)
    lo = c(_X_LO_NEG)
    x = builder.select(builder.fcmp_ordered(">", x, lo), x, lo)  # NaN -> -746 (-> 0)
    k = builder.call(_ftype_intrinsic(builder, "rint", ty, 1), [builder.fmul(x, c(_LOG2E))])
    r = builder.call(fma, [k, c(-_LN2_HI), x])
    r = builder.call(fma, [k, c(-_LN2_LO), r])
    q = c(_Q9)
    for coef in (_Q8, _Q7, _Q6, _Q5, _Q4, _Q3, _Q2, _Q1, _Q0):
        q = builder.call(fma, [q, r, c(coef)])
    r2 = _strict(builder.fmul(r, r))
    p = builder.fadd(builder.call(fma, [r2, q, r]), c(1.0))
    # 2**(k + 54) by bit construction (see _pow2), then the one rounding by 2**-54
    ity = ir.VectorType(ir.IntType(64), ty.count) if isinstance(ty, ir.VectorType) \
        else ir.IntType(64)
    bits = builder.bitcast(builder.fadd(builder.fadd(k, c(54.0)), c(_EXP_MAGIC)), ity)
    big = builder.bitcast(builder.shl(bits, _const(ity, 52)), ty)
    y = _strict(builder.fmul(_strict(builder.fmul(p, big)), c(_TWO_M54)))
    return builder.select(dead, c(0.0), y)


@intrinsic
def exp64_neg(typingctx, x):
    """``exp64(x)`` for ``x <= 0`` or ``-inf``, bit for bit, with fewer operations.

    Same reduction and polynomial as ``exp64``; the clamp is one ordered max (no
    upper clamp: x <= 0), and the scale is ``(p * 2**(k + 54)) * 2**-54``: for
    ``k >= -1076`` the first product is exact (a normal number), so the second does
    the one rounding that ``exp64``'s two-step scale does (none unless the result is
    subnormal). x > 0 is out of contract (no overflow handling). The IR comes from
    ``_emit_exp64_neg`` (shared with the 8-lane passes); it vectorises like plain code.
    """
    if not isinstance(x, (types.Float, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[0], signature.args[0], types.float64)
        return _emit_exp64_neg(builder, v)

    return types.float64(x), codegen


# ---------------------------------------------------------------------------------
# 8-lane exp passes
#
# LLVM's loop vectoriser follows the host's tuning, which on AVX-512 Intel cores
# prefers 256-bit vectors, so numba loops get ymm code. These passes write the loop
# over ``<8 x double>`` themselves and mark the function with
# ``"min-legal-vector-width"="512"``, which lets the x86 backend keep the 8 lanes in
# one zmm register where the CPU has AVX-512 (elsewhere LLVM splits the vectors:
# same results). This changes nothing outside the kernels that call them.

_LANES = 8


def _want_512(builder):
    # llvmlite's attribute set only knows keyword attributes; a string attribute is
    # rendered verbatim. LLVM keeps the max of this attribute when inlining.
    set.add(builder.function.attributes, '"min-legal-vector-width"="512"')


def _is_f32_c1d(a):
    return (isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 1
            and a.layout == "C")


def _is_f64_c1d(a):
    return (isinstance(a, types.Array) and a.dtype == types.float64 and a.ndim == 1
            and a.layout == "C")


def _hsum(builder, acc):
    """Horizontal float64 sum of an ``<8 x double>``, (lo half + hi half) pairwise."""
    i32 = ir.IntType(32)
    n = acc.type.count
    while n > 1:
        n //= 2
        half = ir.VectorType(ir.DoubleType(), n)
        lo = builder.shuffle_vector(acc, ir.Constant(acc.type, ir.Undefined),
                                    ir.Constant(ir.VectorType(i32, n), list(range(n))))
        hi = builder.shuffle_vector(acc, ir.Constant(acc.type, ir.Undefined),
                                    ir.Constant(ir.VectorType(i32, n), list(range(n, 2 * n))))
        acc = builder.fadd(lo, hi)
        assert acc.type == half
    return builder.extract_element(acc, ir.Constant(i32, 0))


def _splat_var(builder, ty, v):
    """The vector type ``ty`` with every lane ``v`` (a runtime scalar of its element
    type)."""
    i32 = ir.IntType(32)
    vec = builder.insert_element(ir.Constant(ty, ir.Undefined), v, ir.Constant(i32, 0))
    return builder.shuffle_vector(vec, ir.Constant(ty, ir.Undefined),
                                  ir.Constant(ir.VectorType(i32, ty.count), [0] * ty.count))


def _load8_f64(builder, ary, idx):
    """``float64(arr[idx:idx + 8])`` as ``<8 x double>`` (one unaligned float32 load)."""
    fty = ir.VectorType(ir.FloatType(), _LANES)
    ptr = builder.gep(ary.data, [idx])
    vec = builder.load(builder.bitcast(ptr, fty.as_pointer()), align=4)
    return builder.fpext(vec, ir.VectorType(ir.DoubleType(), _LANES))


_F32_MAX = float(np.finfo(np.float32).max)


def _clip_f32(builder, y):
    """``float32(clip(y, -FLT_MAX, FLT_MAX))`` lane-wise, ordered compare-selects."""
    lo = _const(y.type, -_F32_MAX)
    hi = _const(y.type, _F32_MAX)
    y = builder.select(builder.fcmp_ordered(">", y, lo), y, lo)
    y = builder.select(builder.fcmp_ordered("<", y, hi), y, hi)
    return builder.fptrunc(y, ir.VectorType(ir.FloatType(), y.type.count))


def _temp_vec(builder, x, t):
    """Lane-wise ``_temp`` of canonical.py, ``float64(float32(clip(x / t)))`` bit for
    bit: the same IEEE division as ``div_strict`` (``x * (1/t)`` rounds differently
    near float32 midpoints, which temperatures like 0.8 hit often; a correctly rounded
    reciprocal-and-correct sequence measured no faster than ``vdivpd``)."""
    d = _strict(builder.fdiv(x, t))
    return builder.fpext(_clip_f32(builder, d), x.type)


def _exp_pass_intrinsic(temp, store, level=False):
    """Build an 8-lane exp pass over ``arr[s:s + n]`` (``n`` a multiple of 8; no bounds
    check: the caller guarantees ``0 <= s`` and ``s + n <= len(arr)``).

    ``store=False``: ``(arr, s, n, T, mw[, t]) -> float64``, the sum of
    ``exp64_neg(float64(y) - mw)`` over the entries with ``arr[i] >= T`` (ordered:
    float64 compare), ``y = arr[i]``, or ``_temp(arr[i], t)`` when ``temp``.
    ``store=True``: ``(arr, s, n, mw, w) -> float64``, also writes each weight
    (masked entries: 0) to ``w[i]`` (float64, C-contiguous), no threshold.
    ``store=True, level=True``: ``(arr, s, n, mw, w, L) -> (float64, float64)``, the
    same stores and sum, and the sum over the entries ``arr[i] >= L`` (one more
    compare and masked add per vector).
    Lanes are summed in 8 float64 accumulators, added pairwise at the end.
    """
    def typer(tys):
        arrays_ok = _is_f32_c1d(tys[0]) and (not store or _is_f64_c1d(tys[4]))
        scalars = tys[3:4] + tys[5:] if store else tys[3:]
        if not (arrays_ok and all(isinstance(t, types.Integer) for t in tys[1:3])
                and all(isinstance(t, (types.Float, types.Integer)) for t in scalars)):
            return None
        ret = types.UniTuple(types.float64, 2) if level else types.float64
        return ret(*tys), codegen

    def codegen(context, builder, signature, args):
        _want_512(builder)
        sig = signature.args
        intp = context.get_value_type(types.intp)
        dty = ir.VectorType(ir.DoubleType(), _LANES)
        ary = context.make_array(sig[0])(context, builder, args[0])
        s = context.cast(builder, args[1], sig[1], types.intp)
        n = context.cast(builder, args[2], sig[2], types.intp)
        f64 = [context.cast(builder, a, t, types.float64)
               for a, t in zip(args[3:], sig[3:]) if not isinstance(t, types.Array)]
        if store:
            mw = f64[0]
            wary = context.make_array(sig[4])(context, builder, args[4])
            Lv = _splat_var(builder, dty, f64[1]) if level else None
        else:
            Tv = _splat_var(builder, dty, f64[0])
            mw = f64[1]
            tv = _splat_var(builder, dty, f64[2]) if temp else None
        mwv = _splat_var(builder, dty, mw)
        zero = _const(dty, 0.0)
        acc_ptr = cgutils.alloca_once_value(builder, zero)
        lacc_ptr = cgutils.alloca_once_value(builder, zero)
        stop = builder.add(s, n)
        with cgutils.for_range_slice(builder, s, stop, ir.Constant(intp, _LANES),
                                     intp=intp) as (i, _):
            x = _load8_f64(builder, ary, i)
            y = _temp_vec(builder, x, tv) if temp else x
            e = _emit_exp64_neg(builder, builder.fsub(y, mwv))
            if store:
                wptr = builder.gep(wary.data, [i])
                builder.store(e, builder.bitcast(wptr, dty.as_pointer()), align=8)
                if level:
                    sel = builder.select(builder.fcmp_ordered(">=", x, Lv), e, zero)
                    builder.store(builder.fadd(builder.load(lacc_ptr), sel), lacc_ptr)
            else:
                e = builder.select(builder.fcmp_ordered(">=", x, Tv), e, zero)
            builder.store(builder.fadd(builder.load(acc_ptr), e), acc_ptr)
        total = _hsum(builder, builder.load(acc_ptr))
        if level:
            above = _hsum(builder, builder.load(lacc_ptr))
            return context.make_tuple(builder, signature.return_type, [total, above])
        return total

    # numba intrinsics take no *args: one explicit signature per variant
    if store and level:
        def impl(typingctx, arr, s, n, mw, w, L):
            return typer((arr, s, n, mw, w, L))
    elif store:
        def impl(typingctx, arr, s, n, mw, w):
            return typer((arr, s, n, mw, w))
    elif temp:
        def impl(typingctx, arr, s, n, T, mw, t):
            return typer((arr, s, n, T, mw, t))
    else:
        def impl(typingctx, arr, s, n, T, mw):
            return typer((arr, s, n, T, mw))
    return impl


exp_sum_ge = intrinsic(_exp_pass_intrinsic(temp=False, store=False))
exp_sum_ge.__doc__ = ("``(arr, s, n, T, mw) -> float64``: sum of ``exp64_neg(float64(x) - mw)`` "
                      "over ``x = arr[s:s+n]`` with ``x >= T`` (8 lanes; see "
                      "``_exp_pass_intrinsic``).")
exp_sum_ge_temp = intrinsic(_exp_pass_intrinsic(temp=True, store=False))
exp_sum_ge_temp.__doc__ = ("``(arr, s, n, T, mw, t) -> float64``: as ``exp_sum_ge`` with the "
                           "weights of ``float32(clip(x / t))`` (canonical's ``_temp``).")
exp_store_sum = intrinsic(_exp_pass_intrinsic(temp=False, store=True))
exp_store_sum.__doc__ = ("``(arr, s, n, mw, w) -> float64``: ``w[i] = exp64_neg(float64(arr[i]) "
                         "- mw)`` for i in ``[s, s+n)``, and their sum (8 lanes).")
exp_store_sum_ge = intrinsic(_exp_pass_intrinsic(temp=False, store=True, level=True))
exp_store_sum_ge.__doc__ = ("``(arr, s, n, mw, w, L) -> (float64, float64)``: as ``exp_store_sum``, "
                            "and the sum of the weights of the entries ``arr[i] >= L`` (the "
                            "mass above a level, in the same pass).")


@intrinsic
def min_ordered(typingctx, a, b):
    """float64 ``a if a < b else b`` (one ``vminpd``; NaN in ``a`` gives ``b``): the
    counterpart of ``max_ordered``."""
    f64 = types.float64

    def codegen(context, builder, signature, args):
        va = context.cast(builder, args[0], signature.args[0], f64)
        vb = context.cast(builder, args[1], signature.args[1], f64)
        lt = builder.fcmp_ordered("<", va, vb)
        return builder.select(lt, va, vb)

    return f64(a, b), codegen
