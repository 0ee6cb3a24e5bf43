/*
 * ADD, int8 and int16, both inputs of the output's shape (no broadcasting), for cores with
 * the DSP extension.  Same results as ops/add.c, bit for bit.
 *
 * int8: each input's rescaled value MBQM((x + offset) << left_shift, multiplier, shift) depends
 * on one int8 only, so it is tabulated once per op for the 256 values (two int32 tables,
 * 2 KiB on the stack); per element what remains is two table reads, the sum and the
 * output requantization, in the wide kernels' four instructions where it applies (add_plain_form).
 *
 * int16 (65,536 values: no table): each input's rescaling is one multiply (rescale_s16_in: SMMULR for a
 * shift of 0, SMLAL for a right shift up to 16), the output's tm_dsp_requantize_right, in two passes over
 * blocks of ADD_S16_BLOCK elements.  That is every int16 ADD TFLite builds: both
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

static void table_range(const int32_t *t, int32_t *lo, int32_t *hi) {
    *lo = *hi = t[0];
    for (int i = 1; i < ADD_TABLE_ENTRIES; ++i) {
        *lo = t[i] < *lo ? t[i] : *lo;
        *hi = t[i] > *hi ? t[i] : *hi;
    }
}

/*
 * Whether the output's requantization takes the wide kernels' form (conv_2d_wide.c, WIDE_RQ: SMMULR of the
 * doubled sum by M, minus 1 when negative, plus c, shifted right by r, which is TFLite's MBQM plus the offset
 * exactly for sums within +-2^30, a right shift r of 1..24 and |offset * 2^r| < 2^27: tm_dsp_wide_rq's plain
 * case, tested in tests/compiler/test_dsp_precomputed.py); then c into *c.  The sums' range is the tables'.
 */
static int add_plain_form(const tm_add_params_t *p, const int32_t *t1, const int32_t *t2, int32_t *c) {
    const int32_t right = -p->output_shift, o = p->output_offset;
    if (p->output_multiplier < 0 || right < 1 || right > 24 || o <= -(1 << (27 - right)) || o >= (1 << (27 - right))) {
        return 0;
    }
    int32_t lo1, hi1, lo2, hi2;
    table_range(t1, &lo1, &hi1);
    table_range(t2, &lo2, &hi2);
    if ((int64_t)lo1 + lo2 <= -(1LL << 30) || (int64_t)hi1 + hi2 >= (1LL << 30)) {
        return 0;
    }
    *c = (int32_t)(1u << (right - 1)) + (int32_t)((uint32_t)o << right);
    return 1;
}

/* add_plain's loop (constant `full`: the activation range is all of int8, one SSAT). */
static inline __attribute__((always_inline)) void add_plain_as(const int32_t *a, const int32_t *b, int32_t m,
                                                               int32_t c, int32_t r, int32_t lo, int32_t hi,
                                                               const int8_t *in1, const int8_t *in2, int8_t *out,
                                                               int32_t count, int full) {
    for (int32_t i = 0; i < count; ++i) {
        int32_t x = tm_smmulr(a[in1[i]] + b[in2[i]], m);
        x = (x + (x >> 31) + c) >> r;
        if (full) {
            out[i] = (int8_t)__ssat(x, 8);
        } else {
            x = x < lo ? lo : x;
            out[i] = (int8_t)(x > hi ? hi : x);
        }
    }
}

/* add_tabulated in the plain form: tables of doubled values (within +-2^29), four instructions of
 * requantization per element. */
static void add_plain(const tm_add_params_t *p, int32_t *t1, int32_t *t2, int32_t c, const int8_t *in1,
                      const int8_t *in2, int8_t *out, int32_t count) {
    for (int i = 0; i < ADD_TABLE_ENTRIES; ++i) {
        t1[i] *= 2, t2[i] *= 2;
    }
    const int32_t m = p->output_multiplier, r = -p->output_shift, lo = p->act_min, hi = p->act_max;
    if (lo == -128 && hi == 127) {
        add_plain_as(t1 + 128, t2 + 128, m, c, r, lo, hi, in1, in2, out, count, 1);
    } else {
        add_plain_as(t1 + 128, t2 + 128, m, c, r, lo, hi, in1, in2, out, count, 0);
    }
}

static void add_tabulated(const tm_add_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out,
                          int32_t count) {
    int32_t t1[ADD_TABLE_ENTRIES], t2[ADD_TABLE_ENTRIES];
    fill_table(t1, p->input1_offset, p->left_shift, p->input1_multiplier, p->input1_shift);
    fill_table(t2, p->input2_offset, p->left_shift, p->input2_multiplier, p->input2_shift);
    int32_t c;
    if (add_plain_form(p, t1, t2, &c)) {
        add_plain(p, t1, t2, c, in1, in2, out, count);
        return;
    }
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

/*
 * An int16 input's rescaled value, TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp(x << 15, m, -right)
 * (offset 0, left shift 15), in one multiply, for right in 0..16 (m is 0 or in [2^30, 2^31)):
 *  - right 0: SMMULR(x << 16, m) = floor((x * m + 2^15) / 2^16) = SRDHM(x << 15, m);
 *  - right 1..16: tm_dsp_requantize_right's single rounding, floor((x 2^15 m + 2^30 + (half - n) 2^31) /
 *    2^(31 + right)) with half = 2^(right - 1) and n = [x 2^15 m + 2^30 < 0], scaled by 2^(16 - right):
 *    floor((x 2^(16 - right) m + 2^31 + 2^(31 - right) - n 2^(32 - right)) / 2^32), an SMLAL onto a low word
 *    (x 2^(16 - right) fits int32).  n is [x < 0]: for x < 0, x m <= -2^30 unless m = 0, where both give 0.
 */
typedef struct {
    int32_t multiplier;
    int32_t right;
    int32_t up;      /* 16 - right: x's shift */
    uint32_t low;    /* 2^31 + 2^(31 - right) */
    uint32_t negative; /* 2^(32 - right), taken off the low word for x < 0 */
} s16_in_rq_t;

static s16_in_rq_t s16_in_rq_of(int32_t multiplier, int32_t shift) {
    const int32_t right = -shift;
    s16_in_rq_t q = {multiplier, right, 16 - right, 0, 0};
    if (right > 0) {
        q.low = (1u << 31) + (1u << (31 - right)), q.negative = 1u << (32 - right);
    }
    return q;
}

static inline __attribute__((always_inline)) int32_t rescale_s16_in(int32_t x, const s16_in_rq_t *q, int right) {
    if (!right) {
        return tm_smmulr((int32_t)((uint32_t)x << 16), q->multiplier);
    }
    uint32_t lo = q->low - (q->negative & (uint32_t)(x >> 31));
    int32_t hi = 0;
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"((int32_t)((uint32_t)x << q->up)), "r"(q->multiplier));
    return hi;
}

/* sum[i] = both inputs' rescaled values (constant `right1`, `right2`: whether each shifts right). */
static inline __attribute__((always_inline)) void rescale_pair_s16(const int16_t *in1, const int16_t *in2, int32_t n,
                                                                   const s16_in_rq_t *q1, const s16_in_rq_t *q2,
                                                                   int32_t *sum, int right1, int right2) {
    const s16_in_rq_t a = *q1, b = *q2;
    for (int32_t i = 0; i < n; ++i) {
        sum[i] = rescale_s16_in(in1[i], &a, right1) + rescale_s16_in(in2[i], &b, right2);
    }
}

/* out[i] = sum[i] requantized by qo (a right shift) and clamped to [lo, hi] (constant `kind`: tm_clamp_s16's). */
static inline __attribute__((always_inline)) void requantize_block_s16_as(const int32_t *sum, int32_t n,
                                                                          const tm_dsp_rq_t *qo, int32_t lo,
                                                                          int32_t hi, int16_t *out, int kind) {
    const int32_t m = qo->multiplier, half = qo->half, right_m1 = qo->right_m1;
    for (int32_t i = 0; i < n; ++i) {
        out[i] = (int16_t)tm_clamp_s16(tm_dsp_requantize_right(sum[i], m, half, right_m1), kind, lo, hi);
    }
}

__attribute__((noinline)) static void requantize_block_s16(const int32_t *sum, int32_t n, const tm_dsp_rq_t *qo,
                                                           int32_t lo, int32_t hi, int16_t *out) {
    const int kind = tm_s16_clamp_kind(lo, hi);
    if (kind == TM_S16_CLAMP_NONE) {
        requantize_block_s16_as(sum, n, qo, lo, hi, out, TM_S16_CLAMP_NONE);
    } else if (kind == TM_S16_CLAMP_RELU) {
        requantize_block_s16_as(sum, n, qo, lo, hi, out, TM_S16_CLAMP_RELU);
    } else {
        requantize_block_s16_as(sum, n, qo, lo, hi, out, TM_S16_CLAMP_RANGE);
    }
}

/*
 * int16 as TFLite builds it (offsets 0, left shift 15, input shifts -16..0: the larger input's multiplier is
 * exactly 1/2, shift 0; an output right shift): per block of ADD_S16_BLOCK elements, the inputs' rescaled sums
 * in one pass (rescale_s16_in), then the output's requantization in another, so that each pass keeps its
 * constants in registers.
 */
static void add_s16_right(const tm_add_params_t *p, const int16_t *in1, const int16_t *in2, int16_t *out,
                          int32_t count) {
    const s16_in_rq_t q1 = s16_in_rq_of(p->input1_multiplier, p->input1_shift);
    const s16_in_rq_t q2 = s16_in_rq_of(p->input2_multiplier, p->input2_shift);
    const tm_dsp_rq_t qo = tm_dsp_rq_of(p->output_multiplier, p->output_shift);
    const int32_t lo = p->act_min, hi = p->act_max;
    int32_t sum[ADD_S16_BLOCK];
    for (int32_t i0 = 0; i0 < count; i0 += ADD_S16_BLOCK) {
        const int32_t n = count - i0 < ADD_S16_BLOCK ? count - i0 : ADD_S16_BLOCK;
        const int16_t *a = in1 + i0, *b = in2 + i0;
        if (q1.right && q2.right) {
            rescale_pair_s16(a, b, n, &q1, &q2, sum, 1, 1);
        } else if (q1.right) {
            rescale_pair_s16(a, b, n, &q1, &q2, sum, 1, 0);
        } else if (q2.right) {
            rescale_pair_s16(a, b, n, &q1, &q2, sum, 0, 1);
        } else {
            rescale_pair_s16(a, b, n, &q1, &q2, sum, 0, 0);
        }
        requantize_block_s16(sum, n, &qo, lo, hi, out + i0);
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
        const int right = p->input1_offset == 0 && p->input2_offset == 0 && p->output_offset == 0 &&
                          p->left_shift == 15 && p->input1_shift <= 0 && p->input1_shift >= -16 &&
                          p->input2_shift <= 0 && p->input2_shift >= -16 && p->output_shift < 0;
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
