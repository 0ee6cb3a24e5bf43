/*
 * tm_fixedpoint.h - integer arithmetic of the TFLite quantization spec.
 *
 * These follow gemmlowp's fixed-point primitives and TFLite's
 * MultiplyByQuantizedMultiplier with its default double rounding (a rounding
 * doubling high multiply, then a rounding right shift), which is what the
 * TFLite Micro reference kernels use.  Written from the spec; behaviour is
 * pinned by the bit-exact tests against the tflite-micro interpreter.
 */
#ifndef TM_FIXEDPOINT_H
#define TM_FIXEDPOINT_H

#include <stdint.h>

static inline int32_t tm_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
static inline int32_t tm_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t tm_clamp_i32(int32_t x, int32_t lo, int32_t hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

/* round(a * b / 2^31), ties away from zero, saturating the single overflow case. */
static inline int32_t tm_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    return (int32_t)((ab + nudge) / (1LL << 31)); /* C division truncates toward 0 */
}

/* x / 2^exponent rounded to nearest, ties away from zero. */
static inline int32_t tm_rounding_divide_by_pot(int32_t x, int exponent) {
    const int32_t mask = (int32_t)((1LL << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * multiplier * 2^(shift-31) with TFLite's double rounding. */
static inline int32_t tm_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
    const int left_shift = shift > 0 ? shift : 0;
    const int right_shift = shift > 0 ? 0 : -shift;
    const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
    return tm_rounding_divide_by_pot(tm_srdhm(shifted, multiplier), right_shift);
}

/* 64-bit accumulator variant (int16x8 ops with int64 bias): TFLite reduces the
 * multiplier to 16 bits and rounds once. */
static inline int32_t tm_multiply_by_quantized_multiplier_64(int64_t x, int32_t multiplier, int32_t shift) {
    const int32_t reduced = multiplier < 0x7FFF0000 ? ((multiplier + (1 << 15)) >> 16) : 0x7FFF;
    const int total_shift = 15 - shift;
    const int64_t round = (int64_t)1 << (total_shift - 1);
    return (int32_t)((x * (int64_t)reduced + round) >> total_shift);
}

/* Requantizes an int16x8 accumulator on TFLM's path for the op and bias type
 * (chosen by the compiler): 64-bit accumulator with an int64 bias, or the
 * 32-bit (wrapping) path with an int32 bias. */
static inline int32_t tm_requantize_s16(int64_t acc, const void *bias, int acc64, int index,
                                        int32_t multiplier, int32_t shift) {
    if (acc64) {
        if (bias) {
            acc += ((const int64_t *)bias)[index];
        }
        return tm_multiply_by_quantized_multiplier_64(acc, multiplier, shift);
    }
    uint32_t acc32 = (uint32_t)acc;
    if (bias) {
        acc32 += (uint32_t)((const int32_t *)bias)[index];
    }
    return tm_multiply_by_quantized_multiplier((int32_t)acc32, multiplier, shift);
}

/* x * 2^exponent, saturating (gemmlowp SaturatingRoundingMultiplyByPOT, exponent >= 0). */
static inline int32_t tm_saturating_shift_left(int32_t x, int exponent) {
    if (exponent == 0) {
        return x;
    }
    const int32_t threshold = (int32_t)((1LL << (31 - exponent)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

/* gemmlowp's exp(x) for x <= 0; input Q(integer_bits).(31-integer_bits) with
 * integer_bits <= 5, result Q0.31. */
int32_t tm_exp_on_negative_values(int32_t a, int integer_bits);

/* gemmlowp's logistic for a Q4.27 input, result Q0.31. */
int32_t tm_logistic_q4(int32_t a);

/* gemmlowp's 1 / (1 + x) for x in [0, 1); input and result Q0.31. */
int32_t tm_one_over_one_plus_x_q0(int32_t a);

#endif /* TM_FIXEDPOINT_H */
