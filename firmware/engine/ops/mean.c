/* MEAN (int8, int16) over any set of axes, on the arithmetic path TFLM picks
 * (see tm_mean_params_t).  Each output sums its reduced elements directly, so
 * no scratch buffer is needed (integer sums do not depend on order). */
#include "tm_fixedpoint.h"
#include "tm_kernels.h"

/* Where the reduced elements of the output at `out_index` (a flat index over the kept dims) start,
 * their count, and the strides of `in`. */
static int32_t reduced_base(const tm_shape_t *in, int32_t mask, int32_t out_index, int32_t *stride, int32_t *count) {
    int32_t base = 0, n = 1, s = 1;
    for (int d = in->rank - 1; d >= 0; --d) {
        stride[d] = s;
        s *= in->dims[d];
    }
    for (int d = in->rank - 1; d >= 0; --d) { /* place the kept coordinates */
        if (!(mask & (1 << d))) {
            base += (out_index % in->dims[d]) * stride[d];
            out_index /= in->dims[d];
        } else {
            n *= in->dims[d];
        }
    }
    *count = n;
    return base;
}

/* Offset of the k-th reduced element from the base. */
static int32_t reduced_offset(const tm_shape_t *in, int32_t mask, const int32_t *stride, int32_t k) {
    int32_t offset = 0;
    for (int d = in->rank - 1; d >= 0; --d) {
        if (mask & (1 << d)) {
            offset += (k % in->dims[d]) * stride[d];
            k /= in->dims[d];
        }
    }
    return offset;
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

#define TM_DEFINE_MEAN(NAME, T, LO, HI)                                                                 \
    void NAME(const tm_mean_params_t *p, const tm_shape_t *in, int32_t outputs, const T *input,        \
              T *output) {                                                                              \
        int32_t stride[TM_MAX_RANK];                                                                    \
        for (int32_t i = 0; i < outputs; ++i) {                                                         \
            int32_t n;                                                                                  \
            const int32_t base = reduced_base(in, p->reduce_mask, i, stride, &n);                       \
            int32_t sum = 0;                                                                            \
            for (int32_t k = 0; k < n; ++k) {                                                           \
                sum += input[base + reduced_offset(in, p->reduce_mask, stride, k)];                     \
            }                                                                                           \
            output[i] = (T)(n > 0 ? mean_one(p, sum, n, LO, HI) : 0);                                   \
        }                                                                                               \
    }

TM_DEFINE_MEAN(tm_mean_s8, int8_t, INT8_MIN, INT8_MAX)
TM_DEFINE_MEAN(tm_mean_s16, int16_t, INT16_MIN, INT16_MAX)

tm_status_t tm_kernel_mean(const tm_model_t *model, const tm_op_t *op) {
    const tm_mean_params_t *p = (const tm_mean_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const void *input = tm_in_data(model, op, 0);
    void *output = tm_out_data(model, op, 0);
    if (!input || !output) {
        return TM_ERR_BAD_MODEL;
    }
    const tm_shape_t in = tm_shape_of(in_t);
    if (out_t->dtype == TM_INT16) {
        tm_mean_s16(p, &in, tm_elements(out_t), (const int16_t *)input, (int16_t *)output);
        return TM_OK;
    }
    if (out_t->dtype != TM_INT8) {
        return TM_ERR_BAD_MODEL;
    }
    tm_mean_s8(p, &in, tm_elements(out_t), (const int8_t *)input, (int8_t *)output);
    return TM_OK;
}
