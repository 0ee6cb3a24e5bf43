/*
 * ADD, int8 and int16, both inputs of the output's shape (no broadcasting), for cores with
 * the DSP extension.  Same results as ops/add.c, bit for bit.
 *
 * int8: each input's rescaled value MBQM((x + offset) << left_shift, multiplier, shift) depends
 * on one int8 only, so it is tabulated once per op for the 256 values (two int32 tables,
 * 2 KiB on the stack); per element what remains is two table reads, the sum and the
 * output requantization.
 *
 * int16 (65,536 values: no table): the three requantizations per element are
 * tm_dsp_requantize_right's four instructions for a right shift and an SRDHM for a shift of 0, in
 * three passes over blocks of ADD_S16_BLOCK elements.  That is every int16 ADD TFLite builds: both
 * input multipliers are at most 1/2 (exactly 1/2, shift 0, for the larger scale), and the output's
 * is below 1 unless the output scale is under 1/2^15 of the inputs' (which TFLite Micro refuses);
 * tm_dsp_rq_apply takes any other shifts.  (x + offset) << 15 stays below 2^31 in magnitude for any int16 x
 * and offset 0, which is what TFLite requires of int16 ADD (symmetric quantization).
 *
 * Broadcasting and small int8 tensors (where the tables cost more than they save) go to the
 * next kernel (tm_kernel_table.h).
 */
#include "tm_kernels.h"

#define ADD_TABLE_MIN_ELEMENTS 256
#define ADD_TABLE_ENTRIES 256 /* one rescaled value per int8 */
#define ADD_S16_BLOCK 128     /* int16: elements per pass of add_s16_right (their int32 sums on the stack) */

int32_t tm_add_dsp_scratch_bytes(const tm_shape_t *in1, const tm_shape_t *in2, const tm_shape_t *out, uint8_t dtype) {
    const int32_t count = tm_shape_elements(out);
    if (!TM_KERNEL_TAKES(add, dsp, dtype) || tm_shape_elements(in1) != count || tm_shape_elements(in2) != count) {
        return TM_SCRATCH_NEXT;
    }
    if (dtype == TM_INT16) {
        return ADD_S16_BLOCK * (int32_t)sizeof(int32_t);
    }
    return count < ADD_TABLE_MIN_ELEMENTS ? TM_SCRATCH_NEXT : 2 * ADD_TABLE_ENTRIES * (int32_t)sizeof(int32_t);
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

/* floor((x * m + 2^30) / 2^31): TFLite's SRDHM for a non-negative multiplier (tm_dsp_requantize, shift 0). */
static inline int32_t srdhm_s16(int32_t x, int32_t m) {
    return (int32_t)(((int64_t)x * m + (1LL << 30)) >> 31);
}

/* sum[i] (+)= the rescaled value of in[i]: one requantization per element (shift 0 or a right shift). */
static void rescale_s16(const int16_t *in, int32_t n, int32_t offset, int32_t left, const tm_dsp_rq_t *q,
                        int32_t *sum, int accumulate) {
    const int32_t m = q->multiplier, half = q->half, right_m1 = q->right_m1;
    if (q->shift == 0) {
        for (int32_t i = 0; i < n; ++i) {
            const int32_t v = srdhm_s16((int32_t)((uint32_t)(in[i] + offset) << left), m);
            sum[i] = accumulate ? sum[i] + v : v;
        }
        return;
    }
    for (int32_t i = 0; i < n; ++i) {
        const int32_t v = tm_dsp_requantize_right((int32_t)((uint32_t)(in[i] + offset) << left), m, half, right_m1);
        sum[i] = accumulate ? sum[i] + v : v;
    }
}

/*
 * int16, input shifts 0 or right shifts (the larger input's ratio is exactly 1/2: shift 0) and an output right
 * shift: the three requantizations of an element in three passes over a block (one pass each), so that each
 * pass keeps its constants in registers (one pass over all three spills).
 */
static void add_s16_right(const tm_add_params_t *p, const int16_t *in1, const int16_t *in2, int16_t *out,
                          int32_t count) {
    const tm_dsp_rq_t q1 = tm_dsp_rq_of(p->input1_multiplier, p->input1_shift);
    const tm_dsp_rq_t q2 = tm_dsp_rq_of(p->input2_multiplier, p->input2_shift);
    const tm_dsp_rq_t qo = tm_dsp_rq_of(p->output_multiplier, p->output_shift);
    int32_t sum[ADD_S16_BLOCK];
    for (int32_t i0 = 0; i0 < count; i0 += ADD_S16_BLOCK) {
        const int32_t n = count - i0 < ADD_S16_BLOCK ? count - i0 : ADD_S16_BLOCK;
        rescale_s16(in1 + i0, n, p->input1_offset, p->left_shift, &q1, sum, 0);
        rescale_s16(in2 + i0, n, p->input2_offset, p->left_shift, &q2, sum, 1);
        const int32_t m = qo.multiplier, half = qo.half, right_m1 = qo.right_m1;
        const int32_t out_offset = p->output_offset, lo = p->act_min, hi = p->act_max;
        int16_t *o = out + i0;
        for (int32_t i = 0; i < n; ++i) {
            int32_t v = tm_dsp_requantize_right(sum[i], m, half, right_m1) + out_offset;
            v = v < lo ? lo : v;
            o[i] = (int16_t)(v > hi ? hi : v);
        }
    }
}

/* int16, any shifts. */
static void add_s16_any(const tm_add_params_t *p, const int16_t *in1, const int16_t *in2, int16_t *out,
                        int32_t count) {
    const tm_dsp_rq_t q1 = tm_dsp_rq_of(p->input1_multiplier, p->input1_shift);
    const tm_dsp_rq_t q2 = tm_dsp_rq_of(p->input2_multiplier, p->input2_shift);
    const tm_dsp_rq_t qo = tm_dsp_rq_of(p->output_multiplier, p->output_shift);
    for (int32_t i = 0; i < count; ++i) {
        const int32_t a = (int32_t)((uint32_t)(in1[i] + p->input1_offset) << p->left_shift);
        const int32_t b = (int32_t)((uint32_t)(in2[i] + p->input2_offset) << p->left_shift);
        const int32_t sum = tm_dsp_rq_apply(&q1, a) + tm_dsp_rq_apply(&q2, b);
        int32_t v = tm_dsp_rq_apply(&qo, sum) + p->output_offset;
        v = v < p->act_min ? p->act_min : v;
        out[i] = (int16_t)(v > p->act_max ? p->act_max : v);
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
    if (tm_elements(in1_t) != count || tm_elements(in2_t) != count) {
        return tm_next_add_dsp(model, op); /* broadcasting */
    }
    if (out_t->dtype == TM_INT16) {
        const int right = p->input1_shift <= 0 && p->input2_shift <= 0 && p->output_shift < 0;
        (right ? add_s16_right : add_s16_any)(p, (const int16_t *)in1, (const int16_t *)in2, (int16_t *)out, count);
        return TM_OK;
    }
    if (count < ADD_TABLE_MIN_ELEMENTS) {
        return tm_next_add_dsp(model, op); /* too small for the tables to pay */
    }
    add_tabulated(p, (const int8_t *)in1, (const int8_t *)in2, (int8_t *)out, count);
    return TM_OK;
}

#endif /* TM_HAVE_DSP */
