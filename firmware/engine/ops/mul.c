/* MUL, int8 and int16, with broadcasting (TFLite's quantized multiply). */
#include "broadcast.h"
#include "tm_fixedpoint.h"

static inline int32_t mul_one(const tm_mul_params_t *p, int32_t x, int32_t y) {
    const int32_t product = (x + p->input1_offset) * (y + p->input2_offset);
    const int32_t v = tm_multiply_by_quantized_multiplier(product, p->output_multiplier, p->output_shift);
    return tm_clamp_i32(v + p->output_offset, p->act_min, p->act_max);
}

TM_DEFINE_BROADCAST_OP(mul, s8, tm_mul_params_t, int8_t, mul_one)
TM_DEFINE_BROADCAST_OP(mul, s16, tm_mul_params_t, int16_t, mul_one)
TM_DEFINE_BROADCAST_KERNEL(mul, tm_mul_params_t)
