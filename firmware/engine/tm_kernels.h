/* tm_kernels.h - one entry point per op kind; each lives in ops/<op>.c. */
#ifndef TM_KERNELS_H
#define TM_KERNELS_H

#include "tm_engine.h"

tm_status_t tm_kernel_conv_2d(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_depthwise_conv_2d(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_fully_connected(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_max_pool_2d(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_average_pool_2d(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_reshape(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_softmax(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_add(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_mul(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_logistic(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_mean(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_pad(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_concatenation(const tm_model_t *model, const tm_op_t *op);

static inline int tm_dtype_size(uint8_t dtype) {
    switch (dtype) {
    case TM_INT8: case TM_UINT8: return 1;
    case TM_INT16: return 2;
    case TM_INT64: return 8;
    default: return 4;
    }
}
tm_status_t tm_kernel_quantize(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_dequantize(const tm_model_t *model, const tm_op_t *op);

/* Optimized kernels, compiled only for cores with the feature (host/build.py adds
 * ops_dsp/ with -DTM_OPT_DSP, ops_mve/ with -DTM_OPT_MVE); each falls back to the
 * portable kernel above for the cases it does not cover.  engine.c picks them. */
#if defined(TM_OPT_DSP)
tm_status_t tm_kernel_conv_2d_dsp(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_depthwise_conv_2d_dsp(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_fully_connected_dsp(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_add_dsp(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_quantize_dsp(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_dequantize_dsp(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_max_pool_2d_dsp(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_average_pool_2d_dsp(const tm_model_t *model, const tm_op_t *op);
#endif
#if defined(TM_OPT_MVE)
tm_status_t tm_kernel_conv_2d_mve(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_fully_connected_mve(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_add_mve(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_depthwise_conv_2d_mve(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_max_pool_2d_mve(const tm_model_t *model, const tm_op_t *op);
tm_status_t tm_kernel_average_pool_2d_mve(const tm_model_t *model, const tm_op_t *op);
#endif

/* Helpers shared by kernels. */
static inline const tm_tensor_t *tm_in_tensor(const tm_model_t *m, const tm_op_t *op, int i) {
    return (i < op->n_inputs && op->inputs[i] >= 0) ? &m->tensors[op->inputs[i]] : 0;
}
static inline const tm_tensor_t *tm_out_tensor(const tm_model_t *m, const tm_op_t *op, int i) {
    return &m->tensors[op->outputs[i]];
}
static inline const void *tm_in_data(const tm_model_t *m, const tm_op_t *op, int i) {
    return (i < op->n_inputs && op->inputs[i] >= 0) ? tm_tensor_ptr(m, op->inputs[i]) : 0;
}
static inline void *tm_out_data(const tm_model_t *m, const tm_op_t *op, int i) {
    return tm_tensor_ptr(m, op->outputs[i]);
}
/* The filter taps [t0, t1) of a window of `taps` taps starting at input index `origin`, `dilation`
 * apart, that land inside an input of length `size` (the optimized convolutions' border test). */
static inline void tm_tap_range(int origin, int taps, int dilation, int size, int *t0, int *t1) {
    int a = 0, b = taps;
    while (a < b && origin + dilation * a < 0) {
        ++a;
    }
    while (b > a && origin + dilation * (b - 1) >= size) {
        --b;
    }
    *t0 = a, *t1 = b;
}

static inline int32_t tm_elements(const tm_tensor_t *t) {
    int32_t n = 1;
    for (int i = 0; i < t->rank; ++i) {
        n *= t->dims[i];
    }
    return n;
}

#endif /* TM_KERNELS_H */
