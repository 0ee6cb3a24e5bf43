/* QUANTIZE: float32 -> int8/int16 (round(x / scale) + zero point, rounding
 * half away from zero as roundf does), or int8/int16 -> int8/int16 requantize. */
#include "tm_fixedpoint.h"
#include "tm_kernels.h"

/* roundf(q) + zero_point clamped to [lo, hi], without libm: the float is exact
 * in double, so floor(|q| + 0.5) is exact too. */
static int32_t quantize_one(float x, float scale, int32_t zero_point, int32_t lo, int32_t hi) {
    const double q = (double)(x / scale);
    const double magnitude = (q < 0 ? -q : q) + 0.5;
    if (!(magnitude < 2147483648.0)) { /* also catches NaN */
        return q < 0 ? lo : hi;
    }
    const int32_t rounded = (int32_t)(int64_t)magnitude; /* truncation == floor for >= 0 */
    return tm_clamp_i32((q < 0 ? -rounded : rounded) + zero_point, lo, hi);
}

static int32_t read_int(const void *data, uint8_t dtype, int32_t i) {
    return dtype == TM_INT16 ? ((const int16_t *)data)[i] : ((const int8_t *)data)[i];
}

static void write_int(void *data, uint8_t dtype, int32_t i, int32_t v) {
    if (dtype == TM_INT16) {
        ((int16_t *)data)[i] = (int16_t)v;
    } else {
        ((int8_t *)data)[i] = (int8_t)v;
    }
}

tm_status_t tm_quantize(const tm_quantize_params_t *p, int32_t count, uint8_t in_dtype, const void *input,
                        uint8_t out_dtype, void *output) {
    if (out_dtype != TM_INT8 && out_dtype != TM_INT16) {
        return TM_ERR_BAD_MODEL;
    }
    const int32_t lo = out_dtype == TM_INT16 ? INT16_MIN : INT8_MIN;
    const int32_t hi = out_dtype == TM_INT16 ? INT16_MAX : INT8_MAX;
    if (in_dtype == TM_FLOAT32) {
        const float *x = (const float *)input;
        for (int32_t i = 0; i < count; ++i) {
            write_int(output, out_dtype, i, quantize_one(x[i], p->scale, p->zero_point, lo, hi));
        }
        return TM_OK;
    }
    if (in_dtype != TM_INT8 && in_dtype != TM_INT16) {
        return TM_ERR_BAD_MODEL;
    }
    for (int32_t i = 0; i < count; ++i) {
        const int32_t v = read_int(input, in_dtype, i) + p->input_offset;
        const int32_t q = tm_multiply_by_quantized_multiplier(v, p->multiplier, p->shift) + p->output_offset;
        write_int(output, out_dtype, i, tm_clamp_i32(q, lo, hi));
    }
    return TM_OK;
}

tm_status_t tm_kernel_quantize(const tm_model_t *model, const tm_op_t *op) {
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const void *input = tm_in_data(model, op, 0);
    void *output = tm_out_data(model, op, 0);
    if (!input || !output) {
        return TM_ERR_BAD_MODEL;
    }
    return tm_quantize((const tm_quantize_params_t *)op->params, tm_elements(out_t), tm_in_tensor(model, op, 0)->dtype,
                       input, out_t->dtype, output);
}
