/*
 * tm_kernels.h - what the kernels share: the shapes ("dims") their flat compute functions take,
 * the flat compute functions of the portable kernels (ops/<op>.c), the kernel prototypes the
 * table generates (tm_kernel_table.h), and helpers.
 *
 * Each portable kernel is two layers, as CMSIS-NN and TFLite Micro's reference ops are:
 * a flat compute function over a params struct, dims and data pointers (callable from a test
 * without a model: tests/test_kernels_flat.py), and the adapter tm_kernel_<op>(model, op) that
 * the engine's op table calls, which reads the tensors and calls it.
 */
#ifndef TM_KERNELS_H
#define TM_KERNELS_H

#include "tm_engine.h"

/* ---- dims ------------------------------------------------------------------------------------ */

/* Any tensor's shape (elementwise ops, PAD, MEAN, CONCATENATION). */
typedef struct {
    int32_t rank;
    int32_t dims[TM_MAX_RANK];
} tm_shape_t;

/* CONV_2D and DEPTHWISE_CONV_2D: NHWC input and output; filter OHWI (CONV_2D: out_c x f_h x f_w x
 * f_c, f_c = in_c / groups) or 1HWC (DEPTHWISE_CONV_2D: f_c = out_c). */
typedef struct {
    int32_t batches, in_h, in_w, in_c;
    int32_t f_h, f_w, f_c;
    int32_t out_h, out_w, out_c;
} tm_conv_dims_t;

/* FULLY_CONNECTED: input [batches, depth], weights [units, depth], output [batches, units]. */
typedef struct {
    int32_t batches, depth, units;
} tm_fc_dims_t;

/* MAX_POOL_2D, AVERAGE_POOL_2D: NHWC input and output of the same channels. */
typedef struct {
    int32_t batches, in_h, in_w, channels, out_h, out_w;
} tm_pool_dims_t;

/* A scratch-size function's answer when its kernel hands ops like this one to the next kernel
 * of its row (tm_kernel_table.h); else the bytes of scratch the kernel holds while it runs. */
#define TM_SCRATCH_NEXT (-1)

/* Every kernel's prototype, tm_takes_* and tm_next_* (tm_kernel_table.h). */
#include "tm_kernel_table.h"
TM_KERNEL_TABLE(TM_DECLARE_ROW)

/* ---- flat compute functions of the portable kernels (ops/) ------------------------------------ */

/* CONV_2D (grouped when f_c < in_c) and DEPTHWISE_CONV_2D (any depth multiplier); int16x8: bias
 * int64 when p->acc64, else int32 (or NULL).  TM_ERR_BAD_MODEL for inconsistent dims. */
tm_status_t tm_conv_2d_s8(const tm_conv_params_t *p, const tm_conv_dims_t *d, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, int8_t *output);
tm_status_t tm_conv_2d_s16(const tm_conv_params_t *p, const tm_conv_dims_t *d, const int16_t *input,
                           const int8_t *filter, const void *bias, int16_t *output);
tm_status_t tm_depthwise_conv_2d_s8(const tm_conv_params_t *p, const tm_conv_dims_t *d, const int8_t *input,
                                    const int8_t *filter, const int32_t *bias, int8_t *output);
tm_status_t tm_depthwise_conv_2d_s16(const tm_conv_params_t *p, const tm_conv_dims_t *d, const int16_t *input,
                                     const int8_t *filter, const void *bias, int16_t *output);

void tm_fully_connected_s8(const tm_fc_params_t *p, const tm_fc_dims_t *d, const int8_t *input,
                           const int8_t *weights, const int32_t *bias, int8_t *output);
void tm_fully_connected_s16(const tm_fc_params_t *p, const tm_fc_dims_t *d, const int16_t *input,
                            const int8_t *weights, const void *bias, int16_t *output);

void tm_max_pool_2d_s8(const tm_pool_params_t *p, const tm_pool_dims_t *d, const int8_t *input, int8_t *output);
void tm_max_pool_2d_s16(const tm_pool_params_t *p, const tm_pool_dims_t *d, const int16_t *input,
                        int16_t *output);
/* TM_ERR_BAD_MODEL when a window has no tap in the image. */
tm_status_t tm_average_pool_2d_s8(const tm_pool_params_t *p, const tm_pool_dims_t *d, const int8_t *input,
                                  int8_t *output);
tm_status_t tm_average_pool_2d_s16(const tm_pool_params_t *p, const tm_pool_dims_t *d, const int16_t *input,
                                   int16_t *output);

/* ADD and MUL with NumPy broadcasting (in1, in2 of rank <= out's; TM_ERR_BAD_MODEL otherwise). */
tm_status_t tm_add_s8(const tm_add_params_t *p, const tm_shape_t *in1, const tm_shape_t *in2, const tm_shape_t *out,
                      const int8_t *x1, const int8_t *x2, int8_t *y);
tm_status_t tm_add_s16(const tm_add_params_t *p, const tm_shape_t *in1, const tm_shape_t *in2,
                       const tm_shape_t *out, const int16_t *x1, const int16_t *x2, int16_t *y);
tm_status_t tm_mul_s8(const tm_mul_params_t *p, const tm_shape_t *in1, const tm_shape_t *in2, const tm_shape_t *out,
                      const int8_t *x1, const int8_t *x2, int8_t *y);
tm_status_t tm_mul_s16(const tm_mul_params_t *p, const tm_shape_t *in1, const tm_shape_t *in2,
                       const tm_shape_t *out, const int16_t *x1, const int16_t *x2, int16_t *y);

/* SOFTMAX over the last dim: `rows` rows of `depth`. */
void tm_softmax_s8(const tm_softmax_params_t *p, int32_t rows, int32_t depth, const int8_t *input, int8_t *output);
void tm_softmax_s16(const tm_softmax_params_t *p, int32_t rows, int32_t depth, const int16_t *input,
                    int16_t *output);

/* LOGISTIC of `count` elements; int16: TM_ERR_BAD_MODEL without the table or with a shift outside 0..31. */
void tm_logistic_s8(const tm_logistic_params_t *p, int32_t count, const int8_t *input, int8_t *output);
tm_status_t tm_logistic_s16(const tm_logistic_params_t *p, int32_t count, const int16_t *input, int16_t *output);

/* MEAN of `in` over p->reduce_mask into `outputs` elements. */
void tm_mean_s8(const tm_mean_params_t *p, const tm_shape_t *in, int32_t outputs, const int8_t *input,
                int8_t *output);
void tm_mean_s16(const tm_mean_params_t *p, const tm_shape_t *in, int32_t outputs, const int16_t *input,
                 int16_t *output);

/* PAD / PADV2 of elements of `element_size` bytes (1: int8, 2: int16). */
void tm_pad(const tm_pad_params_t *p, const tm_shape_t *in, const tm_shape_t *out, int element_size,
            const void *input, void *output);

/* CONCATENATION, one input at a time (CMSIS-NN style): places `input` at byte `position` of each
 * output slab along p->axis and returns the position of the next input. */
int32_t tm_concatenation_place(const tm_concat_params_t *p, const tm_shape_t *out, int element_size,
                               const tm_shape_t *in, const void *input, void *output, int32_t position);

/* RESHAPE: the bytes, unless the planner made output alias input. */
void tm_reshape(const void *input, void *output, uint32_t bytes);

/* QUANTIZE float32 or int8/int16 -> int8/int16, DEQUANTIZE int8/int16 -> float32, `count` elements
 * (TM_ERR_BAD_MODEL for other types). */
tm_status_t tm_quantize(const tm_quantize_params_t *p, int32_t count, uint8_t in_dtype, const void *input,
                        uint8_t out_dtype, void *output);
tm_status_t tm_dequantize(const tm_quantize_params_t *p, int32_t count, uint8_t in_dtype, const void *input,
                          float *output);

/* ---- helpers shared by kernels ---------------------------------------------------------------- */

static inline int tm_dtype_size(uint8_t dtype) {
    switch (dtype) {
    case TM_INT8: case TM_UINT8: return 1;
    case TM_INT16: return 2;
    case TM_INT64: return 8;
    default: return 4;
    }
}

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

static inline tm_shape_t tm_shape_of(const tm_tensor_t *t) {
    tm_shape_t s = {t->rank, {0}};
    for (int i = 0; i < t->rank && i < TM_MAX_RANK; ++i) {
        s.dims[i] = t->dims[i];
    }
    return s;
}

/* The dims of a CONV_2D / DEPTHWISE_CONV_2D op's tensors; 0 unless all three are rank 4. */
static inline int tm_conv_dims_of(const tm_tensor_t *in, const tm_tensor_t *f, const tm_tensor_t *out,
                                  tm_conv_dims_t *d) {
    if (!in || !f || in->rank != 4 || f->rank != 4 || out->rank != 4) {
        return 0;
    }
    d->batches = in->dims[0], d->in_h = in->dims[1], d->in_w = in->dims[2], d->in_c = in->dims[3];
    d->f_h = f->dims[1], d->f_w = f->dims[2], d->f_c = f->dims[3];
    d->out_h = out->dims[1], d->out_w = out->dims[2], d->out_c = out->dims[3];
    return 1;
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

static inline int32_t tm_shape_elements(const tm_shape_t *s) {
    int32_t n = 1;
    for (int i = 0; i < s->rank; ++i) {
        n *= s->dims[i];
    }
    return n;
}

#endif /* TM_KERNELS_H */
