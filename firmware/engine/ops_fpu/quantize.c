/*
 * QUANTIZE float32 -> int8/int16 and DEQUANTIZE int8/int16 -> float32 on a single-precision
 * FPU (tm_kernel_table.h; other types go to the next kernel).  Same results as ops/quantize.c and
 * ops/dequantize.c, bit for bit:
 *  - QUANTIZE: q = x / scale is the same float division; for |q| < 2^20 its integer part t
 *    (VCVT truncates) and fraction q - t are exact in float, so rounding half away from zero
 *    is t + (fraction >= 0.5); larger |q| (and NaN, as the portable kernel) saturate.
 *  - DEQUANTIZE: (q - zero point) has at most 17 significant bits and scale 24, so their
 *    product is exact in double and the portable (float)(double * double) is the correctly
 *    rounded product, which is what the float multiply gives.
 */
#include "tm_kernels.h"

#if TM_HAVE_FPU

static inline int32_t quantize_one(float x, float scale, int32_t zero_point, int32_t lo, int32_t hi) {
    const float q = x / scale;
    const float magnitude = q < 0 ? -q : q;
    if (!(magnitude < 1048576.0f)) { /* |rounded| >= 2^20 exceeds int16 with any zero point; NaN */
        return q < 0 ? lo : hi;
    }
    const int32_t whole = (int32_t)magnitude;
    const int32_t rounded = whole + (magnitude - (float)whole >= 0.5f);
    const int32_t v = (q < 0 ? -rounded : rounded) + zero_point;
    return v < lo ? lo : (v > hi ? hi : v);
}

tm_status_t tm_kernel_quantize_fpu(const tm_model_t *model, const tm_op_t *op) {
    const tm_quantize_params_t *p = (const tm_quantize_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const float *x = (const float *)tm_in_data(model, op, 0);
    void *output = tm_out_data(model, op, 0);
    if (!in_t || !TM_KERNEL_TAKES(quantize, fpu, in_t->dtype) || !x || !output ||
        (out_t->dtype != TM_INT8 && out_t->dtype != TM_INT16)) {
        return tm_next_quantize_fpu(model, op);
    }
    const float scale = p->scale;
    const int32_t zp = p->zero_point, n = tm_elements(out_t);
    if (out_t->dtype == TM_INT8) {
        int8_t *y = (int8_t *)output;
        for (int32_t i = 0; i < n; ++i) {
            y[i] = (int8_t)quantize_one(x[i], scale, zp, INT8_MIN, INT8_MAX);
        }
    } else {
        int16_t *y = (int16_t *)output;
        for (int32_t i = 0; i < n; ++i) {
            y[i] = (int16_t)quantize_one(x[i], scale, zp, INT16_MIN, INT16_MAX);
        }
    }
    return TM_OK;
}

tm_status_t tm_kernel_dequantize_fpu(const tm_model_t *model, const tm_op_t *op) {
    const tm_quantize_params_t *p = (const tm_quantize_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const void *input = tm_in_data(model, op, 0);
    float *y = (float *)tm_out_data(model, op, 0);
    if (!in_t || !input || !y || out_t->dtype != TM_FLOAT32 || !TM_KERNEL_TAKES(dequantize, fpu, in_t->dtype)) {
        return tm_next_dequantize_fpu(model, op);
    }
    const float scale = p->scale;
    const int32_t zp = p->zero_point, n = tm_elements(out_t);
    if (in_t->dtype == TM_INT8) {
        const int8_t *q = (const int8_t *)input;
        for (int32_t i = 0; i < n; ++i) {
            y[i] = (float)(q[i] - zp) * scale;
        }
    } else {
        const int16_t *q = (const int16_t *)input;
        for (int32_t i = 0; i < n; ++i) {
            y[i] = (float)(q[i] - zp) * scale;
        }
    }
    return TM_OK;
}

#endif /* TM_HAVE_FPU */
