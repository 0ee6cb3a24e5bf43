/* MUL, int8 and int16, with broadcasting (TFLite's quantized multiply). */
#include "broadcast.h"
#include "tm_fixedpoint.h"

#define TM_DEFINE_MUL(NAME, T)                                                                        \
    static void NAME(const tm_mul_params_t *p, const tm_broadcast_t *b, int32_t count, const T *in1,  \
                     const T *in2, T *out) {                                                          \
        int32_t index[TM_MAX_RANK] = {0};                                                             \
        int32_t off1 = 0, off2 = 0;                                                                   \
        for (int32_t i = 0; i < count; ++i) {                                                         \
            const int32_t product = (in1[off1] + p->input1_offset) * (in2[off2] + p->input2_offset);  \
            const int32_t v =                                                                         \
                tm_multiply_by_quantized_multiplier(product, p->output_multiplier, p->output_shift);  \
            out[i] = (T)tm_clamp_i32(v + p->output_offset, p->act_min, p->act_max);                   \
            tm_broadcast_next(b, index, &off1, &off2);                                                \
        }                                                                                             \
    }

TM_DEFINE_MUL(mul_s8, int8_t)
TM_DEFINE_MUL(mul_s16, int16_t)

tm_status_t tm_kernel_mul(const tm_model_t *model, const tm_op_t *op) {
    const tm_mul_params_t *p = (const tm_mul_params_t *)op->params;
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
        mul_s8(p, &b, count, (const int8_t *)in1, (const int8_t *)in2, (int8_t *)out);
    } else if (out_t->dtype == TM_INT16) {
        mul_s16(p, &b, count, (const int16_t *)in1, (const int16_t *)in2, (int16_t *)out);
    } else {
        return TM_ERR_BAD_MODEL;
    }
    return TM_OK;
}
