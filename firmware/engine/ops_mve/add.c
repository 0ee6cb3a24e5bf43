/*
 * ADD, int8 and int16, on Helium, when both inputs have the output's element count
 * (no broadcasting): four elements per pass in 32-bit lanes, each rescaled with
 * tm_mve_requantize_n (TFLite's double rounding, bit for bit; mve_common.h; an int16
 * shifted left by 15 is below 2^30 in magnitude).  Broadcasting goes to the next kernel
 * (tm_kernel_table.h).
 */
#include "mve_common.h"

/* No buffer; what it does not take goes to the next kernel, which may hold some. */
int32_t tm_add_mve_scratch_bytes(const tm_shape_t *in1, const tm_shape_t *in2, const tm_shape_t *out, uint8_t dtype) {
    const int32_t count = tm_shape_elements(out);
    return TM_KERNEL_TAKES(add, mve, dtype) && tm_shape_elements(in1) == count && tm_shape_elements(in2) == count
               ? 0
               : TM_SCRATCH_NEXT;
}

#if TM_HAVE_MVE

typedef struct {
    int32_t in1_offset, in2_offset, left_shift;
    int32_t m1, s1, m2, s2, mo, so;
    tm_mve_out_t o;
} add_vec_t;

/* Inlined into the loop so that the parameters stay in registers. */
static inline __attribute__((always_inline)) int32x4_t add_four(const add_vec_t *a, int32x4_t x, int32x4_t y) {
    const int32x4_t sx = vshlq_r_s32(vaddq_n_s32(x, a->in1_offset), a->left_shift);
    const int32x4_t sy = vshlq_r_s32(vaddq_n_s32(y, a->in2_offset), a->left_shift);
    const int32x4_t sum = vaddq_s32(tm_mve_requantize_n(sx, a->m1, a->s1), tm_mve_requantize_n(sy, a->m2, a->s2));
    const int32x4_t v = vaddq_s32(tm_mve_requantize_n(sum, a->mo, a->so), a->o.offset);
    return vminq_s32(vmaxq_s32(v, a->o.lo), a->o.hi);
}

static void add_s8(add_vec_t a, const int8_t *in1, const int8_t *in2, int8_t *out, int32_t count) {
    int32_t i = 0;
    for (; i + 4 <= count; i += 4) {
        vstrbq_s32(out + i, add_four(&a, vldrbq_s32(in1 + i), vldrbq_s32(in2 + i)));
    }
    if (i < count) {
        const mve_pred16_t p = vctp32q((uint32_t)(count - i));
        vstrbq_p_s32(out + i, add_four(&a, vldrbq_z_s32(in1 + i, p), vldrbq_z_s32(in2 + i, p)), p);
    }
}

static void add_s16(add_vec_t a, const int16_t *in1, const int16_t *in2, int16_t *out, int32_t count) {
    int32_t i = 0;
    for (; i + 4 <= count; i += 4) {
        vstrhq_s32(out + i, add_four(&a, vldrhq_s32(in1 + i), vldrhq_s32(in2 + i)));
    }
    if (i < count) {
        const mve_pred16_t p = vctp32q((uint32_t)(count - i));
        vstrhq_p_s32(out + i, add_four(&a, vldrhq_z_s32(in1 + i, p), vldrhq_z_s32(in2 + i, p)), p);
    }
}

tm_status_t tm_kernel_add_mve(const tm_model_t *model, const tm_op_t *op) {
    const tm_add_params_t *p = (const tm_add_params_t *)op->params;
    const tm_tensor_t *in1_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *in2_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const void *in1 = tm_in_data(model, op, 0);
    const void *in2 = tm_in_data(model, op, 1);
    void *out = tm_out_data(model, op, 0);
    const int32_t count = tm_elements(out_t);
    if (!in1_t || !in2_t || !in1 || !in2 || !out || !TM_KERNEL_TAKES(add, mve, out_t->dtype) ||
        in1_t->dtype != out_t->dtype || in2_t->dtype != out_t->dtype || tm_elements(in1_t) != count ||
        tm_elements(in2_t) != count) {
        return tm_next_add_mve(model, op);
    }
    const add_vec_t a = {
        .in1_offset = p->input1_offset, .in2_offset = p->input2_offset, .left_shift = p->left_shift,
        .o = tm_mve_out(p->output_offset, p->act_min, p->act_max),
        .m1 = p->input1_multiplier, .s1 = p->input1_shift, .m2 = p->input2_multiplier, .s2 = p->input2_shift,
        .mo = p->output_multiplier, .so = p->output_shift,
    };
    if (out_t->dtype == TM_INT16) {
        add_s16(a, (const int16_t *)in1, (const int16_t *)in2, (int16_t *)out, count);
    } else {
        add_s8(a, (const int8_t *)in1, (const int8_t *)in2, (int8_t *)out, count);
    }
    return TM_OK;
}

#endif /* TM_HAVE_MVE */
