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

TM_DEFINE_BROADCAST_OP(add, s8, tm_add_params_t, int8_t, add_one)
TM_DEFINE_BROADCAST_OP(add, s16, tm_add_params_t, int16_t, add_one)
TM_DEFINE_BROADCAST_KERNEL(add, tm_add_params_t)
