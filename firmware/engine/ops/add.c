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

#define TM_DEFINE_ADD(NAME, T)                                                                  \
    static void NAME(const tm_add_params_t *p, const tm_broadcast_t *b, int32_t count,          \
                     const T *in1, const T *in2, T *out) {                                      \
        int32_t index[TM_MAX_RANK] = {0};                                                       \
        int32_t off1 = 0, off2 = 0;                                                             \
        for (int32_t i = 0; i < count; ++i) {                                                   \
            out[i] = (T)add_one(p, in1[off1], in2[off2]);                                       \
            tm_broadcast_next(b, index, &off1, &off2);                                          \
        }                                                                                       \
    }

TM_DEFINE_ADD(add_s8, int8_t)
TM_DEFINE_ADD(add_s16, int16_t)

tm_status_t tm_kernel_add(const tm_model_t *model, const tm_op_t *op) {
    const tm_add_params_t *p = (const tm_add_params_t *)op->params;
    const tm_tensor_t *in1_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *in2_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const void *in1 = tm_in_data(model, op, 0);
    const void *in2 = tm_in_data(model, op, 1);
    void *out = tm_out_data(model, op, 0);
    if (!in1 || !in2 || !out || in1_t->rank > out_t->rank || in2_t->rank > out_t->rank) {
        return TM_ERR_BAD_MODEL;
    }
    tm_broadcast_t b;
    tm_broadcast_init(&b, in1_t, in2_t, out_t);
    const int32_t count = tm_elements(out_t);
    if (out_t->dtype == TM_INT8) {
        add_s8(p, &b, count, (const int8_t *)in1, (const int8_t *)in2, (int8_t *)out);
    } else if (out_t->dtype == TM_INT16) {
        add_s16(p, &b, count, (const int16_t *)in1, (const int16_t *)in2, (int16_t *)out);
    } else {
        return TM_ERR_BAD_MODEL;
    }
    return TM_OK;
}
