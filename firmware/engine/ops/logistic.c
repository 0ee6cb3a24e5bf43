/* LOGISTIC.  int8 -> int8 with output scale 1/256 and zero point -128
 * (gemmlowp's Q4.27 logistic).  int16 -> int16 with zero points 0 and output
 * scale 2^-15 (TFLM's interpolated sigmoid table). */
#include "tm_fixedpoint.h"
#include "tm_kernels.h"

void tm_logistic_s8(const tm_logistic_params_t *p, int32_t n, const int8_t *input, int8_t *output) {
    for (int32_t i = 0; i < n; ++i) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        if (x <= -p->input_range_radius) {
            output[i] = INT8_MIN;
        } else if (x >= p->input_range_radius) {
            output[i] = INT8_MAX;
        } else {
            const int32_t x_q4 = tm_multiply_by_quantized_multiplier(x, p->input_multiplier, p->input_left_shift);
            const int32_t y_q0 = tm_logistic_q4(x_q4);
            /* Q0.31 -> Q0.8 (scale 1/256), then the -128 zero point. */
            const int32_t y = tm_rounding_divide_by_pot(y_q0, 31 - 8) + INT8_MIN;
            output[i] = (int8_t)tm_clamp_i32(y, INT8_MIN, INT8_MAX);
        }
    }
}

enum {
    kSigmoidFractionBits = 9,        /* table step: 2^9 units of the rescaled input (1/24) */
    kSigmoidLastIndex = 255,
};

/* The rescaled input r has 1.0 == 3 * 4096, so r >> 9 indexes sigmoid(i / 24).
 * The table holds sigmoid(|x|) in 0.16; negative inputs use 1 - sigmoid(|x|).
 * Interpolation is in 0.25, rounded down to 0.15 (2^-15 output scale). */
tm_status_t tm_logistic_s16(const tm_logistic_params_t *p, int32_t n, const int16_t *input, int16_t *output) {
    if (!p->sigmoid_lut || p->input_left_shift < 0 || p->input_left_shift > 31) {
        return TM_ERR_BAD_MODEL;
    }
    int32_t multiplier = p->input_multiplier;
    int32_t shift = p->input_left_shift;
    if (multiplier == 0) { /* input scale 2^-12: x * 3 exactly */
        multiplier = 3;
        shift = 0;
    }
    const int32_t round = shift > 0 ? (int32_t)1 << (shift - 1) : 0;
    const uint16_t *lut = p->sigmoid_lut;
    for (int32_t i = 0; i < n; ++i) {
        /* |x * multiplier| < 2^15 * 2^15: no int32 overflow (compiler checks multiplier <= 32767). */
        const int32_t r = ((int32_t)input[i] * multiplier + round) >> shift;
        const uint32_t magnitude = r < 0 ? 0u - (uint32_t)r : (uint32_t)r;
        const uint32_t index = magnitude >> kSigmoidFractionBits;
        uint32_t y; /* sigmoid(|x|) in 0.25 */
        if (index >= kSigmoidLastIndex) {
            y = (uint32_t)0x7FFF << 10;
        } else {
            const uint32_t lo = lut[index];
            const uint32_t hi = lut[index + 1];
            const uint32_t frac = magnitude & ((1u << kSigmoidFractionBits) - 1u);
            y = (lo << kSigmoidFractionBits) + frac * (hi - lo);
        }
        y = r >= 0 ? y + (1u << 9) : (1u << 25) - y + (1u << 9) - 1u;
        output[i] = (int16_t)(y >> 10);
    }
    return TM_OK;
}

tm_status_t tm_kernel_logistic(const tm_model_t *model, const tm_op_t *op) {
    const tm_logistic_params_t *p = (const tm_logistic_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const void *input = tm_in_data(model, op, 0);
    void *output = tm_out_data(model, op, 0);
    if (!p || !input || !output || in_t->dtype != out_t->dtype) {
        return TM_ERR_BAD_MODEL;
    }
    const int32_t n = tm_elements(out_t);
    if (out_t->dtype == TM_INT16) {
        return tm_logistic_s16(p, n, (const int16_t *)input, (int16_t *)output);
    }
    if (out_t->dtype != TM_INT8) {
        return TM_ERR_BAD_MODEL;
    }
    tm_logistic_s8(p, n, (const int8_t *)input, (int8_t *)output);
    return TM_OK;
}
