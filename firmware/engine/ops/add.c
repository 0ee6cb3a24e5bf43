/* ADD, int8 and int16, with broadcasting (TFLite's quantized add). */
#include "broadcast.h"
#include "tm_fixedpoint.h"

static inline int32_t add_one(const tm_add_params_t *p, int32_t x, int32_t y) {
    const int32_t a = (int32_t)((uint32_t)(x + p->input1_offset) << p->left_shift);
    const int32_t b = (int32_t)((uint32_t)(y + p->input2_offset) << p->left_shift);
    const int32_t sum = tm_multiply_by_quantized_multiplier(a, p->input1_multiplier, p->input1_shift) +
                        tm_multiply_by_quantized_multiplier(b, p->input2_multiplier, p->input2_shift);
    const int32_t out = tm_multiply_by_quantized_multiplier(sum, p->output_multiplier, p->output_shift);
    return tm_clamp_i32(out + p->output_offset, p->act_min, p->act_max);
}

/* Row by row (the innermost dim, in1 and in2 s1 and s2 elements apart), the multi-index over the
 * outer dims advanced once a row: the per-element loop keeps its operands in registers. */
#define TM_DEFINE_ADD(NAME, T)                                                                  \
    static void NAME(const tm_add_params_t *p, const tm_broadcast_t *b, int32_t count,          \
                     const T *in1, const T *in2, T *out) {                                      \
        int32_t index[TM_MAX_RANK] = {0};                                                       \
        int32_t off1 = 0, off2 = 0, s1, s2;                                                     \
        const int32_t n = tm_broadcast_row(b, &s1, &s2);                                        \
        for (T *const end = out + count; out < end; out += n) {                                 \
            const T *x1 = in1 + off1, *x2 = in2 + off2;                                         \
            for (int32_t j = 0; j < n; ++j, x1 += s1, x2 += s2) {                               \
                out[j] = (T)add_one(p, *x1, *x2);                                               \
            }                                                                                   \
            tm_broadcast_next_row(b, index, &off1, &off2);                                      \
        }                                                                                       \
    }

TM_DEFINE_ADD(add_s8, int8_t)
TM_DEFINE_ADD(add_s16, int16_t)

tm_status_t tm_add_s8(const tm_add_params_t *p, const tm_shape_t *in1, const tm_shape_t *in2, const tm_shape_t *out,
                      const int8_t *x1, const int8_t *x2, int8_t *y) {
    if (!tm_broadcastable(in1, in2, out)) {
        return TM_ERR_BAD_MODEL;
    }
    tm_broadcast_t b;
    tm_broadcast_init(&b, in1, in2, out);
    add_s8(p, &b, tm_shape_elements(out), x1, x2, y);
    return TM_OK;
}

tm_status_t tm_add_s16(const tm_add_params_t *p, const tm_shape_t *in1, const tm_shape_t *in2,
                       const tm_shape_t *out, const int16_t *x1, const int16_t *x2, int16_t *y) {
    if (!tm_broadcastable(in1, in2, out)) {
        return TM_ERR_BAD_MODEL;
    }
    tm_broadcast_t b;
    tm_broadcast_init(&b, in1, in2, out);
    add_s16(p, &b, tm_shape_elements(out), x1, x2, y);
    return TM_OK;
}

tm_status_t tm_kernel_add(const tm_model_t *model, const tm_op_t *op) {
    const tm_add_params_t *p = (const tm_add_params_t *)op->params;
    const tm_tensor_t *in1_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *in2_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const void *in1 = tm_in_data(model, op, 0);
    const void *in2 = tm_in_data(model, op, 1);
    void *out = tm_out_data(model, op, 0);
    if (!in1 || !in2 || !out) {
        return TM_ERR_BAD_MODEL;
    }
    const tm_shape_t s1 = tm_shape_of(in1_t), s2 = tm_shape_of(in2_t), so = tm_shape_of(out_t);
    if (out_t->dtype == TM_INT8) {
        return tm_add_s8(p, &s1, &s2, &so, (const int8_t *)in1, (const int8_t *)in2, (int8_t *)out);
    }
    if (out_t->dtype == TM_INT16) {
        return tm_add_s16(p, &s1, &s2, &so, (const int16_t *)in1, (const int16_t *)in2, (int16_t *)out);
    }
    return TM_ERR_BAD_MODEL;
}

