/*
 * ADD, int8, both inputs of the output's shape (no broadcasting), for cores with the
 * DSP extension.  Same results as ops/add.c, bit for bit.
 *
 * Each input's rescaled value MBQM((x + offset) << left_shift, multiplier, shift) depends
 * on one int8 only, so it is tabulated once per op for the 256 values (two int32 tables,
 * 2 KiB on the stack); per element what remains is two table reads, the sum and the
 * output requantization.  Broadcasting, int16 and small tensors (where the tables cost
 * more than they save) go to the next kernel (tm_kernel_table.h).
 */
#include "tm_kernels.h"

#define ADD_TABLE_MIN_ELEMENTS 256
#define ADD_TABLE_ENTRIES 256 /* one rescaled value per int8 */

int32_t tm_add_dsp_scratch_bytes(const tm_shape_t *in1, const tm_shape_t *in2, const tm_shape_t *out, uint8_t dtype) {
    const int32_t count = tm_shape_elements(out);
    if (!TM_KERNEL_TAKES(add, dsp, dtype) || count < ADD_TABLE_MIN_ELEMENTS || tm_shape_elements(in1) != count ||
        tm_shape_elements(in2) != count) {
        return TM_SCRATCH_NEXT;
    }
    return 2 * ADD_TABLE_ENTRIES * (int32_t)sizeof(int32_t);
}

#if TM_HAVE_DSP
#include "dsp_common.h"

/* table[x + 128] = the rescaled value of int8 x. */
static void fill_table(int32_t table[ADD_TABLE_ENTRIES], int32_t offset, int32_t left_shift, int32_t multiplier,
                       int32_t shift) {
    const tm_dsp_rq_t q = tm_dsp_rq_of(multiplier, shift);
    for (int x = -128; x < 128; ++x) {
        table[x + 128] = tm_dsp_rq_apply(&q, (int32_t)((uint32_t)(x + offset) << left_shift));
    }
}

static void add_tabulated(const tm_add_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out,
                          int32_t count) {
    int32_t t1[ADD_TABLE_ENTRIES], t2[ADD_TABLE_ENTRIES];
    fill_table(t1, p->input1_offset, p->left_shift, p->input1_multiplier, p->input1_shift);
    fill_table(t2, p->input2_offset, p->left_shift, p->input2_multiplier, p->input2_shift);
    const tm_dsp_rq_t q = tm_dsp_rq_of(p->output_multiplier, p->output_shift);
    const int32_t out_offset = p->output_offset, lo = p->act_min, hi = p->act_max;
    if (q.shift < 0) {
        for (int32_t i = 0; i < count; ++i) {
            const int32_t sum = t1[in1[i] + 128] + t2[in2[i] + 128];
            int32_t v = tm_dsp_requantize_right(sum, q.multiplier, q.half, q.right_m1) + out_offset;
            v = v < lo ? lo : v;
            out[i] = (int8_t)(v > hi ? hi : v);
        }
        return;
    }
    for (int32_t i = 0; i < count; ++i) {
        const int32_t sum = t1[in1[i] + 128] + t2[in2[i] + 128];
        out[i] = tm_dsp_out_s8(sum, q.multiplier, q.shift, out_offset, lo, hi);
    }
}

tm_status_t tm_kernel_add_dsp(const tm_model_t *model, const tm_op_t *op) {
    const tm_add_params_t *p = (const tm_add_params_t *)op->params;
    const tm_tensor_t *in1_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *in2_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const void *in1 = tm_in_data(model, op, 0);
    const void *in2 = tm_in_data(model, op, 1);
    void *out = tm_out_data(model, op, 0);
    if (!in1_t || !in2_t || !in1 || !in2 || !out || !TM_KERNEL_TAKES(add, dsp, out_t->dtype) ||
        in1_t->dtype != out_t->dtype || in2_t->dtype != out_t->dtype) {
        return tm_next_add_dsp(model, op);
    }
    const int32_t count = tm_elements(out_t);
    if (count < ADD_TABLE_MIN_ELEMENTS || tm_elements(in1_t) != count || tm_elements(in2_t) != count) {
        return tm_next_add_dsp(model, op); /* broadcasting, or too small for the tables to pay */
    }
    add_tabulated(p, (const int8_t *)in1, (const int8_t *)in2, (int8_t *)out, count);
    return TM_OK;
}

#endif /* TM_HAVE_DSP */
