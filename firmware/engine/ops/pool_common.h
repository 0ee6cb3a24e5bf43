/* pool_common.h - the window a pooling output reads, clipped to the input. */
#ifndef TM_POOL_COMMON_H
#define TM_POOL_COMMON_H

#include "tm_kernels.h"

/* The dims of a pooling op's tensors; 0 unless both are rank 4. */
static inline int tm_pool_dims_of(const tm_model_t *model, const tm_op_t *op, tm_pool_dims_t *s) {
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    if (!in_t || in_t->rank != 4 || out_t->rank != 4) {
        return 0;
    }
    s->batches = in_t->dims[0];
    s->in_h = in_t->dims[1];
    s->in_w = in_t->dims[2];
    s->channels = in_t->dims[3];
    s->out_h = out_t->dims[1];
    s->out_w = out_t->dims[2];
    return 1;
}

/* First and one-past-last filter tap inside the input, along one axis. */
static inline void tm_pool_window(int origin, int filter, int in_size, int *start, int *end) {
    *start = origin < 0 ? -origin : 0;
    *end = in_size - origin < filter ? in_size - origin : filter;
}

/* What an optimized int8 pooling kernel's per-pixel function gets. */
typedef struct {
    int32_t lo, hi;      /* activation range, within [-128, 127] */
    int32_t row_stride;  /* bytes between two input rows */
    int32_t channels;
} tm_pool_ctx_t;

/* One output pixel: `in` points at the window's first in-image tap, rows x cols of them. */
typedef void (*tm_pool_pixel_fn)(const tm_pool_ctx_t *k, const int8_t *in, int rows, int cols, int8_t *out);

/* Walks the output pixels of an int8 pooling op calling `pixel` for each; returns 0 (nothing
 * done) where the portable kernel must do the op: not int8, an average window of more than
 * 256 taps (the int16 sums), an empty activation range.  Else 1 with *status set. */
int tm_pool_s8_walk(const tm_model_t *model, const tm_op_t *op, tm_pool_pixel_fn pixel, int average,
                    tm_status_t *status);

#endif /* TM_POOL_COMMON_H */
