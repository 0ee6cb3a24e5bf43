/*
 * dsp_common.h - helpers of the kernels for cores with the Armv7E-M / Armv8-M
 * DSP extension (Cortex-M4, M7, M33, M55): SIMD widening of int8 quadruples to
 * int16 pairs (SXTB16 / SXTAB16) and dual 16-bit multiply-accumulates (SMLAD).
 *
 * A quadruple q = (q0, q1, q2, q3) (little-endian bytes of a word) is widened
 * into two int16 pairs: lo = (q0, q2) and hi = (q1, q3).  Inputs and weights
 * are widened the same way, so SMLAD(lo_x, lo_w) + SMLAD(hi_x, hi_w) is the
 * dot product of the quadruples.  The input offset (-zero point) is folded in
 * by SXTAB16: x + offset is in [-255, 255] and fits int16.
 *
 * Everything is exact integer arithmetic: the accumulators hold the same
 * int32 sums as the portable kernels (ops/ directory), and requantization is the
 * same double rounding (tm_fixedpoint.h), so results are bit-identical.
 */
#ifndef TM_DSP_COMMON_H
#define TM_DSP_COMMON_H

#include "tm_kernels.h"

#if !TM_HAVE_DSP
#error "include under #if TM_HAVE_DSP only: the build's core has no DSP extension (tm_kernel_table.h)"
#endif

#include <arm_acle.h>
#include <stdint.h>
#include <string.h>

#include "tm_fixedpoint.h"

/* An unaligned 32-bit load (LDR allows unaligned addresses on these cores). */
static inline uint32_t tm_ld32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* SXTB16 / SXTAB16 of the word rotated right by 8 (bytes 1 and 3): one instruction with the
 * rotation operand, which gcc 12 does not form from the intrinsics. */
static inline int32_t tm_sxtb16_ror8(uint32_t x) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

static inline int32_t tm_sxtab16_ror8(int32_t a, uint32_t x) {
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

static inline void tm_st32(void *p, uint32_t v) { memcpy(p, &v, sizeof v); }

/* (a's low half, b's low half) and (a's high half, b's high half): one PKHBT / PKHTB each, which gcc 12 does
 * not form from the masks and shifts. */
static inline uint32_t tm_pack_lo16(uint32_t a, uint32_t b) {
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static inline uint32_t tm_pack_hi16(uint32_t a, uint32_t b) {
    uint32_t r;
    __asm__("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* The offset replicated in both halfwords, for SXTAB16. */
static inline int32_t tm_pack_offset(int32_t offset) {
    return (int32_t)(((uint32_t)offset & 0xFFFFu) | ((uint32_t)offset << 16));
}

/*
 * tm_multiply_by_quantized_multiplier (TFLite's double rounding) in fewer
 * instructions, for a non-negative multiplier (QuantizeMultiplier's output,
 * 0 or in [2^30, 2^31)):
 *  - SRDHM: with nudge 2^30 for ab >= 0 and 1 - 2^30 for ab < 0 and a
 *    truncating division, (ab + nudge) / 2^31 equals floor((ab + 2^30) / 2^31)
 *    in both cases (for ab < 0 the truncation is a ceiling); a = b = INT32_MIN,
 *    the only saturating case, needs a negative multiplier.
 *  - rounding divide by 2^e, ties away from zero: as tm_rounding_divide_by_pot,
 *    (x >> e) + (remainder > threshold), which needs no branch for e == 0.
 */
static inline int32_t tm_dsp_requantize(int32_t acc, int32_t multiplier, int32_t shift) {
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    const int64_t ab = (int64_t)(int32_t)((uint32_t)acc << left) * multiplier;
    const int32_t x = (int32_t)((ab + (1LL << 30)) >> 31);
    const int32_t mask = (int32_t)((1u << right) - 1u);
    const int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)x >> 31);
    return (x >> right) + ((x & mask) > threshold);
}

/*
 * The same for a right shift (shift <= -1, the usual case), with both roundings done on the 64-bit
 * product: x = floor(y / 2^31) with y = acc * multiplier + 2^30 (SRDHM), then ties away from zero,
 * floor((x + half - (x < 0)) / 2^right) with half = 2^(right-1); since x < 0 exactly when y < 0 and
 * floor(floor(z / a) / b) = floor(z / ab), that is floor((y + (half - (y < 0)) * 2^31) / 2^(31+right)).
 */
static inline int32_t tm_dsp_requantize_right(int32_t acc, int32_t multiplier, int32_t half, int32_t right_m1) {
    /* y in (hi, lo); c * 2^31 added as (c << 31, c >> 1) with the carry: gcc spends 5 instructions on it */
    int32_t lo = 1 << 30, hi = 0, c;
    __asm__("smlal %0, %1, %3, %4\n\t"
            "add   %2, %5, %1, asr #31\n\t"
            "adds  %0, %0, %2, lsl #31\n\t"
            "adc   %1, %1, %2, asr #1"
            : "+&r"(lo), "+&r"(hi), "=&r"(c)
            : "r"(acc), "r"(multiplier), "r"(half)
            : "cc");
    return hi >> right_m1;
}

/* SMMULR: floor((a * b + 2^31) / 2^32), the rounded high word of the product. */
static inline int32_t tm_smmulr(int32_t a, int32_t b) {
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/*
 * int16x8 with an int64 bias, TFLite's 64-bit requantization of a sum that fits int32: the low 32 bits of
 * (acc * reduced + 2^(right - 1)) >> right, right in 1..31 (TFLite casts the shifted int64 to int32):
 * SMULL's two words plus the rounding constant, shifted and or-ed (left = 32 - right).
 */
static inline int32_t tm_requantize_s16_64(int32_t acc, int32_t reduced, uint32_t half, int32_t right,
                                           int32_t left) {
    int32_t lo, hi;
    __asm__("smull %0, %1, %2, %3\n\t"
            "adds  %0, %0, %4\n\t"
            "adc   %1, %1, #0\n\t"
            "lsr   %0, %0, %5\n\t"
            "lsl   %1, %1, %6\n\t"
            "orr   %0, %0, %1"
            : "=&r"(lo), "=&r"(hi)
            : "r"(acc), "r"(reduced), "r"(half), "r"(right), "r"(left)
            : "cc");
    return lo;
}

/*
 * TFLite's 64-bit requantization of a sum that fits int32 from tm_dsp_s16_table's words t (conv_2d_gemm.c).
 * `mulh` (a total shift right of 16..31): one SMMULR, as with scaled = reduced * 2^(32 - right) (below 2^31 as
 * reduced < 2^15), floor((acc * scaled + 2^31) / 2^32) is floor((acc * reduced + 2^(right - 1)) / 2^right),
 * TFLite's value, which fits int32 (below 2^30).  Else tm_requantize_s16_64.
 */
static inline __attribute__((always_inline)) int32_t tm_requantize_s16_at(int32_t acc, const int32_t *t, int mulh) {
    return mulh ? tm_smmulr(acc + t[0], t[1])
                : tm_requantize_s16_64(acc + t[0], t[1], (uint32_t)t[2], t[3], 32 - t[3]);
}

/* Two int16 values in one word, the first in the low halfword (PKHBT). */
static inline uint32_t tm_pack_s16(int32_t lo, int32_t hi) {
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
}

/* The clamps of int16 outputs: TFLite's int16 activations are none (one SSAT) or ReLU (one USAT), else any
 * range; callers pass the kind as a constant to get one loop per kind. */
enum { TM_S16_CLAMP_RANGE, TM_S16_CLAMP_NONE, TM_S16_CLAMP_RELU };

static inline int tm_s16_clamp_kind(int32_t lo, int32_t hi) {
    if (hi != INT16_MAX) {
        return TM_S16_CLAMP_RANGE;
    }
    return lo == INT16_MIN ? TM_S16_CLAMP_NONE : lo == 0 ? TM_S16_CLAMP_RELU : TM_S16_CLAMP_RANGE;
}

static inline __attribute__((always_inline)) int32_t tm_clamp_s16(int32_t v, int kind, int32_t lo, int32_t hi) {
    if (kind == TM_S16_CLAMP_NONE) {
        return __ssat(v, 16);
    }
    if (kind == TM_S16_CLAMP_RELU) {
        return __usat(v, 15);
    }
    return tm_clamp_i32(v, lo, hi);
}

/* Per-channel requantization constants: multiplier, and for a right shift half and right - 1. */
typedef struct {
    int32_t multiplier, shift, half, right_m1;
} tm_dsp_rq_t;

static inline tm_dsp_rq_t tm_dsp_rq_of(int32_t multiplier, int32_t shift) {
    const int32_t right = shift < 0 ? -shift : 0;
    tm_dsp_rq_t q = {multiplier, shift, right > 0 ? (int32_t)(1u << (right - 1)) : 0, right > 0 ? right - 1 : 0};
    return q;
}

static inline int32_t tm_dsp_rq_apply(const tm_dsp_rq_t *q, int32_t acc) {
    return q->shift < 0 ? tm_dsp_requantize_right(acc, q->multiplier, q->half, q->right_m1)
                        : tm_dsp_requantize(acc, q->multiplier, q->shift);
}

/* int8 output: requantize, add the output zero point, clamp to the fused activation. */
static inline int8_t tm_dsp_out_s8(int32_t acc, int32_t multiplier, int32_t shift, int32_t out_offset,
                                   int32_t act_min, int32_t act_max) {
    int32_t v = tm_dsp_requantize(acc, multiplier, shift) + out_offset;
    v = v < act_min ? act_min : v;
    v = v > act_max ? act_max : v;
    return (int8_t)v;
}

#endif /* TM_DSP_COMMON_H */
