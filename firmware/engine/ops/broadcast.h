/* broadcast.h - NumPy-style broadcasting for elementwise binary ops. */
#ifndef TM_BROADCAST_H
#define TM_BROADCAST_H

#include "tm_kernels.h"

/* Strides of `t` aligned to the output's rank, 0 where t's dim is 1 (repeats). */
typedef struct {
    int rank;
    int32_t dims[TM_MAX_RANK];
    int32_t stride1[TM_MAX_RANK];
    int32_t stride2[TM_MAX_RANK];
} tm_broadcast_t;

static inline void tm_broadcast_strides(const tm_shape_t *t, const tm_shape_t *out, int32_t *strides) {
    int32_t stride = 1;
    for (int d = out->rank - 1; d >= 0; --d) {
        const int td = d - (out->rank - t->rank);
        const int32_t dim = td >= 0 ? t->dims[td] : 1;
        strides[d] = dim == 1 ? 0 : stride;
        stride *= dim;
    }
}

/* Whether in1 and in2 broadcast to out: neither has more dims than the output, which fits TM_MAX_RANK. */
static inline int tm_broadcastable(const tm_shape_t *in1, const tm_shape_t *in2, const tm_shape_t *out) {
    return in1->rank <= out->rank && in2->rank <= out->rank && out->rank <= TM_MAX_RANK;
}

static inline void tm_broadcast_init(tm_broadcast_t *b, const tm_shape_t *in1, const tm_shape_t *in2,
                                     const tm_shape_t *out) {
    b->rank = out->rank;
    for (int d = 0; d < out->rank; ++d) {
        b->dims[d] = out->dims[d];
    }
    tm_broadcast_strides(in1, out, b->stride1);
    tm_broadcast_strides(in2, out, b->stride2);
}

/* The innermost dim: returns its length and sets the inputs' strides along it (rank 0: one element). */
static inline int32_t tm_broadcast_row(const tm_broadcast_t *b, int32_t *s1, int32_t *s2) {
    if (b->rank == 0) {
        *s1 = *s2 = 0;
        return 1;
    }
    *s1 = b->stride1[b->rank - 1];
    *s2 = b->stride2[b->rank - 1];
    return b->dims[b->rank - 1];
}

/* Advances a multi-index over the output's outer dims (all but the innermost) by one row. */
static inline void tm_broadcast_next_row(const tm_broadcast_t *b, int32_t *index, int32_t *off1, int32_t *off2) {
    for (int d = b->rank - 2; d >= 0; --d) {
        ++index[d];
        *off1 += b->stride1[d];
        *off2 += b->stride2[d];
        if (index[d] < b->dims[d]) {
            return;
        }
        *off1 -= b->stride1[d] * b->dims[d];
        *off2 -= b->stride2[d] * b->dims[d];
        index[d] = 0;
    }
}

#endif /* TM_BROADCAST_H */
