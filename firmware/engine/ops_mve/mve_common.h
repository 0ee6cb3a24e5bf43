/*
 * mve_common.h - int8 building blocks on Helium (M-profile Vector Extension,
 * Cortex-M55/M85), for ops_mve/.  16 int8 lanes per vector; the last partial
 * vector is tail-predicated (VCTP + zeroing loads), so any length works.
 *
 * Input offset.  The kernels never add the offset (-input zero point) lane by
 * lane in their dot products: they accumulate sum(w * x) with VMLADAVA and add
 * offset * sum(w), folded into an "effective bias" bias + offset * sum(w) that
 * is computed once per output channel.  sum(w * (x + offset)) = sum(w * x) +
 * offset * sum(w) holds in wrapping 32-bit arithmetic, so this is the portable
 * kernel's int32 accumulator exactly.  Taps outside the image are filled with
 * the input zero point (x + offset = 0), so the sum over the whole filter is
 * right for border pixels too.
 *
 * Requantization (tm_mve_requantize) is TFLite's double rounding on four lanes:
 * - SaturatingRoundingDoublingHighMul(a, b) = floor((a*b + 2^30) / 2^31) for
 *   every a, b: for a*b < 0 gemmlowp adds 1 - 2^30 and truncates toward zero,
 *   and ceil((m + 1) / 2^31) = floor(m / 2^31) + 1, which is the same value;
 *   a = b = INT32_MIN saturates to INT32_MAX.  That is exactly VQRDMULH.
 * - RoundingDivideByPOT rounds ties away from zero; VRSHL (right shift by a
 *   negative amount) rounds ties up, so negative values are first lowered by
 *   one when the shift is non-zero (a negative value never sits on a tie after
 *   that, and a non-tie keeps its rounding).  INT32_MIN stays (saturating add)
 *   and gives -2^(31-e) either way.
 */
#ifndef TM_MVE_COMMON_H
#define TM_MVE_COMMON_H

#include <stdint.h>

#include "tm_kernels.h"

/* Stack scratch (the kernels' tm_*_mve_scratch_bytes count every buffer): one im2col patch
 * (filter_h x filter_w x in_c bytes) and the requantization tables of up to
 * TM_MVE_CHANNEL_CHUNK output channels (4 words each; depthwise 5).  Larger
 * patches go to the next kernel; more channels are done chunk by chunk.  This part is plain C,
 * for the scratch-size functions, which compile for any target. */
#define TM_MVE_PATCH_BYTES 1152
#define TM_MVE_CHANNEL_CHUNK 64 /* a multiple of 16 (depthwise: 16 lanes per pass) */
_Static_assert(TM_MVE_CHANNEL_CHUNK % 16 == 0, "whole 16-lane groups");

/* Requantization tables of four output channels, one 64-byte record per group
 * so that one pointer reaches all four with immediate offsets. */
typedef struct {
    int32_t eff[4], mult[4], left[4], right[4];
} tm_mve_group_t;

#if TM_HAVE_MVE

#include <arm_mve.h>

#include "tm_fixedpoint.h"

/* Requantization parameters of four lanes: Q31 multipliers, left and right shifts. */
typedef struct {
    int32x4_t multiplier, left, right;
} tm_mve_quant_t;

static inline tm_mve_quant_t tm_mve_quant(int32x4_t multiplier, int32x4_t shift) {
    const int32x4_t zero = vdupq_n_s32(0);
    const tm_mve_quant_t q = {multiplier, vmaxq_s32(shift, zero), vminq_s32(shift, zero)};
    return q;
}

/* Per-channel parameters of channels c .. c+3 (lanes past `count` read nothing). */
static inline tm_mve_quant_t tm_mve_quant_at(const int32_t *multiplier, const int32_t *shift, int count) {
    const mve_pred16_t p = vctp32q((uint32_t)count);
    return tm_mve_quant(vldrwq_z_s32(multiplier, p), vldrwq_z_s32(shift, p));
}

/* tm_multiply_by_quantized_multiplier on four lanes, bit for bit (see the top). */
static inline int32x4_t tm_mve_requantize(int32x4_t acc, tm_mve_quant_t q) {
    int32x4_t x = vshlq_s32(acc, q.left);                      /* wraps, as the portable shift */
    x = vqrdmulhq_s32(x, q.multiplier);
    const int32x4_t fixup = vshrq_n_s32(vandq_s32(x, q.right), 31); /* -1: negative and shifting */
    x = vqaddq_s32(x, fixup);
    return vrshlq_s32(x, q.right);
}

/* tm_mve_requantize with one multiplier and shift for all lanes (scalar operands:
 * no vector registers for the parameters). */
static inline __attribute__((always_inline)) int32x4_t tm_mve_requantize_n(int32x4_t acc, int32_t multiplier,
                                                                           int32_t shift) {
    int32x4_t x = shift > 0 ? vshlq_r_s32(acc, shift) : acc;
    x = vqrdmulhq_n_s32(x, multiplier);
    if (shift < 0) {
        x = vqaddq_s32(x, vshrq_n_s32(x, 31)); /* -1 for negative values: ties away from zero */
        x = vrshlq_n_s32(x, shift);
    }
    return x;
}

/* Requantize, add the output offset, clamp, store the low byte of `count` (<= 4) lanes. */
static inline void tm_mve_store_s8(int8_t *out, int32x4_t acc, tm_mve_quant_t q, int32_t out_offset,
                                   int32_t act_min, int32_t act_max, int count) {
    int32x4_t v = vaddq_n_s32(tm_mve_requantize(acc, q), out_offset);
    v = vminq_s32(vmaxq_s32(v, vdupq_n_s32(act_min)), vdupq_n_s32(act_max));
    vstrbq_p_s32(out, v, vctp32q((uint32_t)count));
}

/* sum of n int8. */
static inline int32_t tm_mve_sum_s8(const int8_t *w, int n) {
    int32_t s = 0;
    for (; n > 0; n -= 16) {
        s = vaddvaq_s8(s, vldrbq_z_s8(w, vctp8q((uint32_t)n)));
        w += 16;
    }
    return s;
}

/* The loop of tm_mve_dot4 as assembly text, for a lane size (tail predication), the loads of x and of the
 * weights (and the weights' post-increment) and the multiply-accumulate: int8 here, int16x8 in conv_2d.c. */
#define TM_MVE_DOT4_ASM(LANES, LOAD_X, LOAD_W, W_STEP, MAC)  \
        "   wlstp." LANES " lr, %[n], 2f\n"                   \
        "1: " LOAD_X " q0, [%[x]], #16\n"                     \
        "   " LOAD_W " q1, [%[w0]], #" W_STEP "\n"            \
        "   " MAC " %[a0], q0, q1\n"                          \
        "   " LOAD_W " q2, [%[w1]], #" W_STEP "\n"            \
        "   " MAC " %[a1], q0, q2\n"                          \
        "   " LOAD_W " q1, [%[w2]], #" W_STEP "\n"            \
        "   " MAC " %[a2], q0, q1\n"                          \
        "   " LOAD_W " q2, [%[w3]], #" W_STEP "\n"            \
        "   " MAC " %[a3], q0, q2\n"                          \
        "   letp lr, 1b\n"                                    \
        "2:\n"

/* Dot products of one row x (n int8) with the four weight rows w0 .. w3 (n int8
 * each) into a[0..3].  A tail-predicated low-overhead loop (WLSTP/LETP: the
 * last partial vector loads and accumulates only its first n % 16 lanes): 10
 * instructions per 64 MACs.  Inline assembly because GCC 12 neither emits
 * tail-predicated loops nor post-increment addressing here; VMLADAVA needs even
 * accumulator registers ("Te"). */
static inline __attribute__((always_inline)) void tm_mve_dot4(const int8_t *x, const int8_t *w0, const int8_t *w1,
                                                              const int8_t *w2, const int8_t *w3, int n,
                                                              int32_t a[4]) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    __asm__ volatile(TM_MVE_DOT4_ASM("8", "vldrb.8", "vldrb.8", "16", "vmladava.s8")
        : [x] "+r"(x), [w0] "+r"(w0), [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3),
          [a0] "+Te"(a0), [a1] "+Te"(a1), [a2] "+Te"(a2), [a3] "+Te"(a3)
        : [n] "r"(n)
        : "q0", "q1", "q2", "lr", "memory");
    a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3;
}

/* The same, as a vector. */
static inline int32x4_t tm_mve_dot_1x4(const int8_t *x, const int8_t *const w[4], int n) {
    int32_t a[4];
    tm_mve_dot4(x, w[0], w[1], w[2], w[3], n, a);
    int32x4_t r = vdupq_n_s32(a[0]);
    r = vsetq_lane_s32(a[1], r, 1);
    r = vsetq_lane_s32(a[2], r, 2);
    return vsetq_lane_s32(a[3], r, 3);
}

/* Output vectors of the requantization: offset, activation min and max. */
typedef struct {
    int32x4_t offset, lo, hi;
} tm_mve_out_t;

static inline tm_mve_out_t tm_mve_out(int32_t offset, int32_t act_min, int32_t act_max) {
    const tm_mve_out_t o = {vdupq_n_s32(offset), vdupq_n_s32(act_min), vdupq_n_s32(act_max)};
    return o;
}

/* The body of tm_mve_requant4 as assembly text, for loops written in assembly (operands
 * %[a0..a3] accumulators, %[t] the tm_mve_group_t, %[off]/%[lo]/%[hi], %[out]; clobbers q0-q2). */
#define TM_MVE_REQUANT4_ASM \
        "   vmov q0[2], q0[0], %[a0], %[a2]\n" \
        "   vmov q0[3], q0[1], %[a1], %[a3]\n" \
        "   vldrw.32 q1, [%[t]]\n" \
        "   vadd.i32 q0, q0, q1\n" \
        "   vldrw.32 q1, [%[t], #32]\n" \
        "   vshl.s32 q0, q0, q1\n" \
        "   vldrw.32 q1, [%[t], #16]\n" \
        "   vqrdmulh.s32 q0, q0, q1\n" \
        "   vldrw.32 q1, [%[t], #48]\n" \
        "   vand q2, q0, q1\n" \
        "   vshr.s32 q2, q2, #31\n" \
        "   vqadd.s32 q0, q0, q2\n" \
        "   vrshl.s32 q0, q0, q1\n" \
        "   vadd.i32 q0, q0, %q[off]\n" \
        "   vmax.s32 q0, q0, %q[lo]\n" \
        "   vmin.s32 q0, q0, %q[hi]\n" \
        "   vstrb.32 q0, [%[out]]\n"

/* out[0..3] = requantized a[k] + t->eff[k] (tm_mve_requantize + offset + clamp)
 * in 17 instructions; assembly so the four accumulators go straight from the
 * general registers into lanes (VMOV Qd[2], Qd[0], Rt, Rt2). */
static inline __attribute__((always_inline)) void tm_mve_requant4(const int32_t a[4], const tm_mve_group_t *t,
                                                                  const tm_mve_out_t *o, int8_t *out) {
    __asm__ volatile(
        TM_MVE_REQUANT4_ASM
        :
        : [a0] "r"(a[0]), [a1] "r"(a[1]), [a2] "r"(a[2]), [a3] "r"(a[3]), [t] "r"(t), [out] "l"(out),
          [off] "w"(o->offset), [lo] "w"(o->lo), [hi] "w"(o->hi)
        : "q0", "q1", "q2", "memory");
}

/* Dot products of x with two weight rows and the sums of those rows (for the
 * input offset) in one tail-predicated loop: 8 instructions per 32 MACs. */
static inline __attribute__((always_inline)) void tm_mve_dot_sums2(const int8_t *x, const int8_t *w0,
                                                                   const int8_t *w1, int n, int32_t out[4]) {
    int32_t a0 = 0, a1 = 0, s0 = 0, s1 = 0;
    __asm__ volatile(
        "   wlstp.8 lr, %[n], 2f\n"
        "1: vldrb.8 q0, [%[x]], #16\n"
        "   vldrb.8 q1, [%[w0]], #16\n"
        "   vmladava.s8 %[a0], q0, q1\n"
        "   vaddva.s8 %[s0], q1\n"
        "   vldrb.8 q2, [%[w1]], #16\n"
        "   vmladava.s8 %[a1], q0, q2\n"
        "   vaddva.s8 %[s1], q2\n"
        "   letp lr, 1b\n"
        "2:\n"
        : [x] "+r"(x), [w0] "+r"(w0), [w1] "+r"(w1), [a0] "+Te"(a0), [a1] "+Te"(a1), [s0] "+Te"(s0),
          [s1] "+Te"(s1)
        : [n] "r"(n)
        : "q0", "q1", "q2", "lr", "memory");
    out[0] = a0, out[1] = a1, out[2] = s0, out[3] = s1;
}

/* As tm_mve_dot_1x4, and *sums = sum of each weight row (for the input offset). */
static inline int32x4_t tm_mve_dot_sums_1x4(const int8_t *x, const int8_t *const w[4], int n, int32x4_t *sums) {
    int32_t lo[4], hi[4];
    tm_mve_dot_sums2(x, w[0], w[1], n, lo);
    tm_mve_dot_sums2(x, w[2], w[3], n, hi);
    int32x4_t s = vdupq_n_s32(lo[2]);
    s = vsetq_lane_s32(lo[3], s, 1);
    s = vsetq_lane_s32(hi[2], s, 2);
    *sums = vsetq_lane_s32(hi[3], s, 3);
    int32x4_t r = vdupq_n_s32(lo[0]);
    r = vsetq_lane_s32(lo[1], r, 1);
    r = vsetq_lane_s32(hi[0], r, 2);
    return vsetq_lane_s32(hi[1], r, 3);
}

/* Pointers to weight rows c .. c+3 of `rows` rows of `stride` bytes; rows past
 * the last repeat it (their lanes are computed but not stored). */
static inline void tm_mve_rows4(const int8_t *w, int c, int rows, int stride, const int8_t *out[4]) {
    for (int k = 0; k < 4; ++k) {
        out[k] = w + (c + k < rows ? c + k : rows - 1) * stride;
    }
}

/* dst[0..n) = src[0..n) (tail-predicated loop, 3 instructions per 16 bytes). */
static inline void tm_mve_copy(int8_t *dst, const int8_t *src, int n) {
    __asm__ volatile(
        "   wlstp.8 lr, %[n], 2f\n"
        "1: vldrb.8 q0, [%[src]], #16\n"
        "   vstrb.8 q0, [%[dst]], #16\n"
        "   letp lr, 1b\n"
        "2:\n"
        : [src] "+r"(src), [dst] "+r"(dst)
        : [n] "r"(n)
        : "q0", "lr", "memory");
}

/* dst[0..n) = value. */
static inline void tm_mve_fill(int8_t *dst, int8_t value, int n) {
    const int8x16_t v = vdupq_n_s8(value);
    __asm__ volatile(
        "   wlstp.8 lr, %[n], 2f\n"
        "1: vstrb.8 %q[v], [%[dst]], #16\n"
        "   letp lr, 1b\n"
        "2:\n"
        : [dst] "+r"(dst)
        : [n] "r"(n), [v] "w"(v)
        : "lr", "memory");
}

#endif /* TM_HAVE_MVE */

#endif /* TM_MVE_COMMON_H */
