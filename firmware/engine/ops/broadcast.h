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

/*
 * The elementwise binary op OP (add, mul) over T: a row-by-row loop (the innermost dim, in1 and in2 s1 and s2
 * elements apart, the multi-index over the outer dims advanced once a row, so the per-element loop keeps its
 * operands in registers) that stores (T)ELEMENT(p, x1, x2), and the flat entry tm_<OP>_<SUFFIX> of
 * tm_kernels.h around it (TM_ERR_BAD_MODEL unless the shapes broadcast).
 */
#define TM_DEFINE_BROADCAST_OP(OP, SUFFIX, PARAMS, T, ELEMENT)                                              \
    static void OP##_##SUFFIX(const PARAMS *p, const tm_broadcast_t *b, int32_t count, const T *in1,        \
                              const T *in2, T *out) {                                                      \
        int32_t index[TM_MAX_RANK] = {0};                                                                  \
        int32_t off1 = 0, off2 = 0, s1, s2;                                                                \
        const int32_t n = tm_broadcast_row(b, &s1, &s2);                                                   \
        for (T *const end = out + count; out < end; out += n) {                                            \
            const T *x1 = in1 + off1, *x2 = in2 + off2;                                                    \
            for (int32_t j = 0; j < n; ++j, x1 += s1, x2 += s2) {                                          \
                out[j] = (T)ELEMENT(p, *x1, *x2);                                                          \
            }                                                                                              \
            tm_broadcast_next_row(b, index, &off1, &off2);                                                 \
        }                                                                                                  \
    }                                                                                                      \
    tm_status_t tm_##OP##_##SUFFIX(const PARAMS *p, const tm_shape_t *in1, const tm_shape_t *in2,          \
                                   const tm_shape_t *out, const T *x1, const T *x2, T *y) {                \
        if (!tm_broadcastable(in1, in2, out)) {                                                            \
            return TM_ERR_BAD_MODEL;                                                                       \
        }                                                                                                  \
        tm_broadcast_t b;                                                                                  \
        tm_broadcast_init(&b, in1, in2, out);                                                              \
        OP##_##SUFFIX(p, &b, tm_shape_elements(out), x1, x2, y);                                           \
        return TM_OK;                                                                                      \
    }

/* tm_kernel_<OP> (the registered kernel of an elementwise binary op): its tensors' shapes and data to
 * tm_<OP>_s8 or tm_<OP>_s16 by the output's type. */
#define TM_DEFINE_BROADCAST_KERNEL(OP, PARAMS)                                                             \
    tm_status_t tm_kernel_##OP(const tm_model_t *model, const tm_op_t *op) {                              \
        const PARAMS *p = (const PARAMS *)op->params;                                                      \
        const tm_tensor_t *in1_t = tm_in_tensor(model, op, 0), *in2_t = tm_in_tensor(model, op, 1);       \
        const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);                                           \
        const void *in1 = tm_in_data(model, op, 0), *in2 = tm_in_data(model, op, 1);                       \
        void *out = tm_out_data(model, op, 0);                                                             \
        if (!in1 || !in2 || !out) {                                                                        \
            return TM_ERR_BAD_MODEL;                                                                       \
        }                                                                                                  \
        const tm_shape_t s1 = tm_shape_of(in1_t), s2 = tm_shape_of(in2_t), so = tm_shape_of(out_t);       \
        if (out_t->dtype == TM_INT8) {                                                                     \
            return tm_##OP##_s8(p, &s1, &s2, &so, (const int8_t *)in1, (const int8_t *)in2, (int8_t *)out);  \
        }                                                                                                  \
        if (out_t->dtype == TM_INT16) {                                                                    \
            return tm_##OP##_s16(p, &s1, &s2, &so, (const int16_t *)in1, (const int16_t *)in2,             \
                                 (int16_t *)out);                                                          \
        }                                                                                                  \
        return TM_ERR_BAD_MODEL;                                                                           \
    }

#endif /* TM_BROADCAST_H */
