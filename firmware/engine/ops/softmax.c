/* SOFTMAX.  int8 -> int8 (scale 1/256, zero point -128) in gemmlowp fixed
 * point: exp of (x - max) rescaled to Q5.26, summed in Q12.19, normalised by a
 * fixed-point reciprocal.  int16 -> int16: TFLM's interpolated lookup tables
 * for exp and 1/(1+x), Q0.15. */
#include "tm_fixedpoint.h"
#include "tm_kernels.h"

enum { kAccumulationIntegerBits = 12 };

static inline int count_leading_zeros(uint32_t x) {
    return x == 0 ? 32 : __builtin_clz(x);
}

static void softmax_row(const tm_softmax_params_t *p, const int8_t *in, int8_t *out, int depth) {
    int32_t max_in_row = INT8_MIN;
    for (int c = 0; c < depth; ++c) {
        max_in_row = in[c] > max_in_row ? in[c] : max_in_row;
    }
    int32_t sum_of_exps = 0; /* Q12.19 */
    for (int c = 0; c < depth; ++c) {
        const int32_t diff = in[c] - max_in_row;
        if (diff >= p->diff_min) {
            const int32_t scaled = tm_srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
            sum_of_exps += tm_rounding_divide_by_pot(tm_exp_on_negative_values(scaled, 5), kAccumulationIntegerBits);
        }
    }
    /* Reciprocal of the sum: normalise it into [1, 2) then 1 / (1 + x). */
    const int headroom_plus_one = count_leading_zeros((uint32_t)sum_of_exps);
    const int num_bits_over_unit = kAccumulationIntegerBits - headroom_plus_one;
    const int32_t shifted_sum_minus_one =
        (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31));
    const int32_t shifted_scale = tm_one_over_one_plus_x_q0(shifted_sum_minus_one);

    for (int c = 0; c < depth; ++c) {
        const int32_t diff = in[c] - max_in_row;
        if (diff >= p->diff_min) {
            const int32_t scaled = tm_srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
            const int32_t exp_q0 = tm_exp_on_negative_values(scaled, 5);
            const int32_t unsat = tm_rounding_divide_by_pot(tm_srdhm(shifted_scale, exp_q0), num_bits_over_unit + 31 - 8);
            out[c] = (int8_t)tm_clamp_i32(unsat + INT8_MIN, INT8_MIN, INT8_MAX);
        } else {
            out[c] = INT8_MIN;
        }
    }
}

/* Linear interpolation in a 513-entry Q0.15 table indexed by an int16. */
static inline int16_t lut_lookup(int16_t value, const int16_t *lut) {
    const uint16_t index = (uint16_t)(256 + (value >> 7));
    const int16_t offset = (int16_t)(value & 0x7f);
    const int16_t base = lut[index];
    const int16_t slope = (int16_t)(lut[index + 1] - lut[index]);
    const int delta = (slope * offset + 64) >> 7;
    return (int16_t)(base + delta);
}

static void softmax_row_s16(const tm_softmax_params_t *p, const int16_t *in, int16_t *out, int depth) {
    int16_t max_in_row = INT16_MIN;
    for (int c = 0; c < depth; ++c) {
        max_in_row = in[c] > max_in_row ? in[c] : max_in_row;
    }
    int32_t sum_of_exps = 0; /* Q16.15; the exps are kept in `out` meanwhile */
    for (int c = 0; c < depth; ++c) {
        const int32_t diff = in[c] - max_in_row;
        const int32_t scaled = tm_multiply_by_quantized_multiplier(diff, p->input_multiplier, p->input_left_shift);
        /* [-65535, 0] maps to [-10, 0]; recentre to the table's int16 domain. */
        const int16_t symmetric = (int16_t)tm_clamp_i32(scaled + 32767, INT16_MIN, INT16_MAX);
        out[c] = lut_lookup(symmetric, p->exp_lut);
        sum_of_exps += out[c];
    }
    const int headroom_plus_one = count_leading_zeros((uint32_t)sum_of_exps);
    const int32_t shifted_sum =
        (int32_t)((((int64_t)sum_of_exps << (headroom_plus_one - 1)) + (1 << 13)) >> 14);
    /* x = sum - 1 for the 1/(1+x) table, recentred from [0, 65535]. */
    const int32_t symmetric_sum = shifted_sum - ((1 << 15) + (1 << 16));
    const int16_t reciprocal =
        lut_lookup((int16_t)tm_clamp_i32(symmetric_sum, INT16_MIN, INT16_MAX), p->one_over_one_plus_x_lut);
    const int right_shift = 31 - headroom_plus_one;
    const int64_t round = (int64_t)(1 << (right_shift - 1));
    for (int c = 0; c < depth; ++c) {
        const int32_t result = (int32_t)(((int64_t)out[c] * reciprocal + round) >> right_shift);
        out[c] = (int16_t)tm_clamp_i32(result, 0, INT16_MAX);
    }
}

void tm_softmax_s8(const tm_softmax_params_t *p, int32_t rows, int32_t depth, const int8_t *input, int8_t *output) {
    for (int32_t r = 0; r < rows; ++r) {
        softmax_row(p, input + r * depth, output + r * depth, depth);
    }
}

void tm_softmax_s16(const tm_softmax_params_t *p, int32_t rows, int32_t depth, const int16_t *input,
                    int16_t *output) {
    for (int32_t r = 0; r < rows; ++r) {
        softmax_row_s16(p, input + r * depth, output + r * depth, depth);
    }
}

tm_status_t tm_kernel_softmax(const tm_model_t *model, const tm_op_t *op) {
    const tm_softmax_params_t *p = (const tm_softmax_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const void *input = tm_in_data(model, op, 0);
    void *output = tm_out_data(model, op, 0);
    if (!input || !output || in_t->rank < 1) {
        return TM_ERR_BAD_MODEL;
    }
    const int32_t depth = in_t->dims[in_t->rank - 1];
    const int32_t rows = tm_elements(in_t) / depth;
    if (in_t->dtype == TM_INT16) {
        if (!p->exp_lut || !p->one_over_one_plus_x_lut) {
            return TM_ERR_BAD_MODEL;
        }
        tm_softmax_s16(p, rows, depth, (const int16_t *)input, (int16_t *)output);
        return TM_OK;
    }
    tm_softmax_s8(p, rows, depth, (const int8_t *)input, (int8_t *)output);
    return TM_OK;
}
