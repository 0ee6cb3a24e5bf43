/* MEAN (int8, int16) over any set of axes, on the arithmetic path TFLM picks
 * (see tm_mean_params_t).  Each output sums its reduced elements directly, so
 * no scratch buffer is needed (integer sums do not depend on order). */
#include "tm_fixedpoint.h"
#include "tm_kernels.h"

/* Sum of the raw input values that reduce into the output at `out_index`
 * (a flat index over the kept dims), with the number of such values. */
static int32_t reduced_sum(const tm_tensor_t *in_t, const void *input, int32_t mask, int32_t out_index,
                           int32_t *count) {
    int32_t stride[TM_MAX_RANK], base = 0, n = 1;
    int32_t s = 1;
    for (int d = in_t->rank - 1; d >= 0; --d) {
        stride[d] = s;
        s *= in_t->dims[d];
    }
    for (int d = in_t->rank - 1; d >= 0; --d) { /* place the kept coordinates */
        if (!(mask & (1 << d))) {
            base += (out_index % in_t->dims[d]) * stride[d];
            out_index /= in_t->dims[d];
        } else {
            n *= in_t->dims[d];
        }
    }
    int32_t sum = 0;
    for (int32_t k = 0; k < n; ++k) { /* walk the reduced coordinates */
        int32_t offset = base, rest = k;
        for (int d = in_t->rank - 1; d >= 0; --d) {
            if (mask & (1 << d)) {
                offset += (rest % in_t->dims[d]) * stride[d];
                rest /= in_t->dims[d];
            }
        }
        sum += in_t->dtype == TM_INT16 ? ((const int16_t *)input)[offset] : ((const int8_t *)input)[offset];
    }
    *count = n;
    return sum;
}

static int32_t mean_one(const tm_mean_params_t *p, int32_t sum, int32_t n, int32_t lo, int32_t hi) {
    const int32_t centred = sum - n * p->input_zero_point;
    if (p->mode == 1) {
        int32_t acc = tm_multiply_by_quantized_multiplier(centred, p->multiplier, p->shift);
        acc = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
        return tm_clamp_i32(acc + p->output_zero_point, lo, hi);
    }
    const int32_t acc = tm_multiply_by_quantized_multiplier(centred, p->multiplier, p->shift);
    return tm_clamp_i32(acc + p->output_zero_point, lo, hi);
}

tm_status_t tm_kernel_mean(const tm_model_t *model, const tm_op_t *op) {
    const tm_mean_params_t *p = (const tm_mean_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const void *input = tm_in_data(model, op, 0);
    void *output = tm_out_data(model, op, 0);
    if (!input || !output || (out_t->dtype != TM_INT8 && out_t->dtype != TM_INT16)) {
        return TM_ERR_BAD_MODEL;
    }
    const int is_s16 = out_t->dtype == TM_INT16;
    const int32_t lo = is_s16 ? INT16_MIN : INT8_MIN, hi = is_s16 ? INT16_MAX : INT8_MAX;
    const int32_t outputs = tm_elements(out_t);
    for (int32_t i = 0; i < outputs; ++i) {
        int32_t n;
        const int32_t sum = reduced_sum(in_t, input, p->reduce_mask, i, &n);
        const int32_t v = n > 0 ? mean_one(p, sum, n, lo, hi) : 0;
        if (is_s16) {
            ((int16_t *)output)[i] = (int16_t)v;
        } else {
            ((int8_t *)output)[i] = (int8_t)v;
        }
    }
    return TM_OK;
}
