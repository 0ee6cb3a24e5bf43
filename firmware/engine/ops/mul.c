/* MUL, int8 and int16, with broadcasting (TFLite's quantized multiply). */
#include "broadcast.h"
#include "tm_fixedpoint.h"

/* Row by row, as ADD (add.c). */
#define TM_DEFINE_MUL(NAME, T)                                                                        \
    static void NAME(const tm_mul_params_t *p, const tm_broadcast_t *b, int32_t count, const T *in1,  \
                     const T *in2, T *out) {                                                          \
        int32_t index[TM_MAX_RANK] = {0};                                                             \
        int32_t off1 = 0, off2 = 0, s1, s2;                                                           \
        const int32_t n = tm_broadcast_row(b, &s1, &s2);                                              \
        for (T *const end = out + count; out < end; out += n) {                                       \
            const T *x1 = in1 + off1, *x2 = in2 + off2;                                               \
            for (int32_t j = 0; j < n; ++j, x1 += s1, x2 += s2) {                                     \
                const int32_t product = (*x1 + p->input1_offset) * (*x2 + p->input2_offset);          \
                const int32_t v =                                                                     \
                    tm_multiply_by_quantized_multiplier(product, p->output_multiplier, p->output_shift); \
                out[j] = (T)tm_clamp_i32(v + p->output_offset, p->act_min, p->act_max);               \
            }                                                                                         \
            tm_broadcast_next_row(b, index, &off1, &off2);                                            \
        }                                                                                             \
    }

TM_DEFINE_MUL(mul_s8, int8_t)
TM_DEFINE_MUL(mul_s16, int16_t)

tm_status_t tm_mul_s8(const tm_mul_params_t *p, const tm_shape_t *in1, const tm_shape_t *in2, const tm_shape_t *out,
                      const int8_t *x1, const int8_t *x2, int8_t *y) {
    if (!tm_broadcastable(in1, in2, out)) {
        return TM_ERR_BAD_MODEL;
    }
    tm_broadcast_t b;
    tm_broadcast_init(&b, in1, in2, out);
    mul_s8(p, &b, tm_shape_elements(out), x1, x2, y);
    return TM_OK;
}

tm_status_t tm_mul_s16(const tm_mul_params_t *p, const tm_shape_t *in1, const tm_shape_t *in2,
                       const tm_shape_t *out, const int16_t *x1, const int16_t *x2, int16_t *y) {
    if (!tm_broadcastable(in1, in2, out)) {
        return TM_ERR_BAD_MODEL;
    }
    tm_broadcast_t b;
    tm_broadcast_init(&b, in1, in2, out);
    mul_s16(p, &b, tm_shape_elements(out), x1, x2, y);
    return TM_OK;
}

tm_status_t tm_kernel_mul(const tm_model_t *model, const tm_op_t *op) {
    const tm_mul_params_t *p = (const tm_mul_params_t *)op->params;
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
        return tm_mul_s8(p, &s1, &s2, &so, (const int8_t *)in1, (const int8_t *)in2, (int8_t *)out);
    }
    if (out_t->dtype == TM_INT16) {
        return tm_mul_s16(p, &s1, &s2, &so, (const int16_t *)in1, (const int16_t *)in2, (int16_t *)out);
    }
    return TM_ERR_BAD_MODEL;
}

