/* fixedpoint.c - gemmlowp's exp and reciprocal approximations (see tm_fixedpoint.h). */
#include "tm_fixedpoint.h"

/* Q0.31 constant "one" saturates to INT32_MAX. */
#define TM_Q0_ONE INT32_MAX

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor expansion around -1/8. */
static int32_t exp_on_interval_neg_quarter_to_zero(int32_t a) {
    const int32_t exp_minus_one_eighth = 1895147668;
    const int32_t one_third = 715827883;
    const int32_t x = a + (1 << 28); /* a + 1/8 */
    const int32_t x2 = tm_srdhm(x, x);
    const int32_t x3 = tm_srdhm(x2, x);
    const int32_t x4 = tm_srdhm(x2, x2);
    const int32_t x4_over_4 = tm_rounding_divide_by_pot(x4, 2);
    const int32_t poly = tm_rounding_divide_by_pot(tm_srdhm(x4_over_4 + x3, one_third) + x2, 1);
    return exp_minus_one_eighth + tm_srdhm(exp_minus_one_eighth, x + poly);
}

int32_t tm_exp_on_negative_values(int32_t a, int integer_bits) {
    const int kIntegerBits = integer_bits, kFractionalBits = 31 - integer_bits;
    const int32_t one_quarter = 1 << (kFractionalBits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_quarter = (a & mask) - one_quarter;
    /* Rescale to Q0.31: a saturating shift left by the integer bits. */
    int32_t result = exp_on_interval_neg_quarter_to_zero(
        tm_saturating_shift_left(a_mod_quarter_minus_quarter, kIntegerBits));
    const int32_t remainder = a_mod_quarter_minus_quarter - a;

    /* exp(-2^k) for k = -2 .. 4 in Q0.31, applied for each set bit of the remainder. */
    static const int32_t multipliers[7] = {
        1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242,
    };
    for (int k = -2; k <= 4 && k < kIntegerBits; ++k) {
        const int shift = kFractionalBits + k;
        if (remainder & (1 << shift)) {
            result = tm_srdhm(result, multipliers[k + 2]);
        }
    }
    return a == 0 ? TM_Q0_ONE : result;
}

int32_t tm_one_over_one_plus_x_q0(int32_t a) {
    /* half_denominator = (a + 1) / 2 rounded (gemmlowp RoundingHalfSum), Q0.31. */
    const int64_t sum = (int64_t)a + (int64_t)TM_Q0_ONE;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    /* Newton-Raphson in Q2.29, starting from 48/17 - 32/17 * d. */
    const int32_t c48_over_17 = 1515870810;
    const int32_t c_neg_32_over_17 = -1010580540;
    const int32_t q2_one = 1 << 29;
    int32_t x = c48_over_17 + tm_srdhm(half_denominator, c_neg_32_over_17);
    for (int i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = tm_srdhm(half_denominator, x);
        const int32_t one_minus = q2_one - half_denominator_times_x;
        /* (Q2 * Q2 = Q4) rescaled to Q2: saturating shift left by 2. */
        x = x + tm_saturating_shift_left(tm_srdhm(x, one_minus), 2);
    }
    /* x / 2 as Q1 with the same raw value, rescaled to Q0: shift left by 1. */
    return tm_saturating_shift_left(x, 1);
}

int32_t tm_logistic_q4(int32_t a) {
    if (a == 0) {
        return 1 << 30; /* one half */
    }
    const int32_t magnitude = a > 0 ? a : -a;
    const int32_t positive = tm_one_over_one_plus_x_q0(tm_exp_on_negative_values(-magnitude, 4));
    return a > 0 ? positive : TM_Q0_ONE - positive;
}
