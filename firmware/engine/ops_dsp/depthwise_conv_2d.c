/*
 * DEPTHWISE_CONV_2D, int8, depth multiplier 1, for cores with the DSP
 * extension.  Same results as ops/depthwise_conv_2d.c, bit for bit.
 *
 * Channels are innermost (NHWC), so four channels of one tap are one word of
 * input and one of filter.  Both are widened to int16 pairs (channels 0,2 and
 * 1,3; the input offset folded in by SXTAB16) and each channel accumulates
 * with SMLABB / SMLATT.  Taps outside the image are skipped by computing the
 * valid filter rows and columns once per output pixel.  Two output pixels of
 * a row that see the same valid columns share each widened filter word.
 * int16x8 and depth multipliers other than 1 go to the next kernel (tm_kernel_table.h).
 * 3x3 stride-1 filters over planes of 25 pixels or more take the channel-plane path first
 * (depthwise_conv_2d_planar.c: MACs paired along a row), within this kernel's scratch.
 */
#include "dsp_conv.h"

/*
 * Tap-list path (filters of up to DW_MAX_TAPS taps): for each output pixel the in-image taps are listed
 * once as (input byte offset, filter byte offset) pairs; then every group of 4 channels runs down the
 * list in assembly, 13 instructions per tap (4 MACs), the 13 live values all in registers.
 */
#define DW_MAX_TAPS 64

/* Channels whose requantization constants are prepared once per op (dw_rq_t and 3 table words each). */
#define DW_MAX_PREPARED 256

/* Per channel: multiplier and, for a right shift, right - 1 (else -1 - shift: the general path). */
typedef struct {
    int32_t multiplier, right_m1;
} dw_rq_t;

/* Words of the filter widened once per op (2 per tap and group of 4 channels: 3x3 filters up to 128
 * channels); they share one buffer with dw3_run's table (DW3_GROUP_WORDS per group of 4 channels). */
#define DW_WIDE_WORDS 576
#define DW3_MAX_CH 128
#define DW3_GROUP_WORDS 34
#define DW_SHARED_WORDS (DW3_MAX_CH / 4 * DW3_GROUP_WORDS)
_Static_assert(DW_SHARED_WORDS >= DW_WIDE_WORDS, "the widened filter fits the shared buffer");

/* dw_by_taps' buffers for ops it takes (the direct path, beyond its limits, holds none). */
int32_t tm_depthwise_conv_2d_dsp_scratch_bytes(const tm_conv_params_t *p, const tm_conv_dims_t *d, uint8_t dtype) {
    if (!TM_KERNEL_TAKES(depthwise_conv_2d, dsp, dtype) || p->depth_multiplier != 1 || d->out_c != d->in_c ||
        d->f_c != d->in_c) {
        return TM_SCRATCH_NEXT;
    }
    if (d->f_h * d->f_w > DW_MAX_TAPS || d->in_c > DW_MAX_PREPARED) {
        return 0;
    }
    return (int32_t)(2 * DW_MAX_TAPS * sizeof(int32_t) + DW_MAX_PREPARED * (sizeof(dw_rq_t) + 3 * sizeof(int32_t)) +
                     DW_SHARED_WORDS * sizeof(int32_t));
}

#if TM_HAVE_DSP
#include "dsp_common.h"

typedef struct {
    const tm_conv_params_t *p;
    const int8_t *filter;
    const int32_t *bias;
    int in_h, in_w, ch, f_w;
    int fy0, fy1, y0;
} dw_ctx_t;

static inline int8_t out_of(const dw_ctx_t *c, int32_t acc, int ch) {
    const tm_conv_params_t *p = c->p;
    return tm_dsp_out_s8(acc, p->out_multiplier[ch], p->out_shift[ch], p->output_offset, p->act_min, p->act_max);
}

static inline int32_t bias_of(const dw_ctx_t *c, int ch) { return c->bias ? c->bias[ch] : 0; }

/* Output pixels with input column origins xa (and xb when two), valid columns [fx0, fx1). */
static void dw_pixels(const dw_ctx_t *c, const int8_t *in_b, int xa, int xb, int two, int fx0, int fx1, int8_t *out_a,
                      int8_t *out_b) {
    const tm_conv_params_t *p = c->p;
    const int ch = c->ch, row_stride = c->in_w * ch, dx = p->dilation_w * ch;
    const int32_t off = p->input_offset, off2 = tm_pack_offset(off);
    const int8_t *in_row0 = in_b + (c->y0 + p->dilation_h * c->fy0) * row_stride;
    const int dy = p->dilation_h * row_stride;
    int k = 0;
    for (; k + 3 < ch; k += 4) {
        int32_t a0 = bias_of(c, k), a1 = bias_of(c, k + 1), a2 = bias_of(c, k + 2), a3 = bias_of(c, k + 3);
        int32_t b0 = a0, b1 = a1, b2 = a2, b3 = a3;
        const int8_t *in_row = in_row0;
        for (int fy = c->fy0; fy < c->fy1; ++fy, in_row += dy) {
            const int8_t *fp = c->filter + (fy * c->f_w + fx0) * ch + k;
            const int8_t *ip = in_row + (xa + p->dilation_w * fx0) * ch + k;
            const int8_t *jp = in_row + (xb + p->dilation_w * fx0) * ch + k;
            for (int fx = fx0; fx < fx1; ++fx, fp += ch, ip += dx, jp += dx) {
                const uint32_t f = tm_ld32(fp), x = tm_ld32(ip);
                const int32_t fl = __sxtb16(f), fh = tm_sxtb16_ror8(f);
                const int32_t xl = __sxtab16(off2, x), xh = tm_sxtab16_ror8(off2, x);
                a0 = __smlabb(xl, fl, a0);
                a2 = __smlatt(xl, fl, a2);
                a1 = __smlabb(xh, fh, a1);
                a3 = __smlatt(xh, fh, a3);
                if (two) {
                    const uint32_t y = tm_ld32(jp);
                    const int32_t yl = __sxtab16(off2, y), yh = tm_sxtab16_ror8(off2, y);
                    b0 = __smlabb(yl, fl, b0);
                    b2 = __smlatt(yl, fl, b2);
                    b1 = __smlabb(yh, fh, b1);
                    b3 = __smlatt(yh, fh, b3);
                }
            }
        }
        int8_t r[4] = {out_of(c, a0, k), out_of(c, a1, k + 1), out_of(c, a2, k + 2), out_of(c, a3, k + 3)};
        memcpy(out_a + k, r, 4);
        if (two) {
            int8_t t[4] = {out_of(c, b0, k), out_of(c, b1, k + 1), out_of(c, b2, k + 2), out_of(c, b3, k + 3)};
            memcpy(out_b + k, t, 4);
        }
    }
    for (; k < ch; ++k) {
        int32_t a = bias_of(c, k), b = a;
        const int8_t *in_row = in_row0;
        for (int fy = c->fy0; fy < c->fy1; ++fy, in_row += dy) {
            for (int fx = fx0; fx < fx1; ++fx) {
                const int32_t f = c->filter[(fy * c->f_w + fx) * ch + k];
                a += f * (in_row[(xa + p->dilation_w * fx) * ch + k] + off);
                if (two) {
                    b += f * (in_row[(xb + p->dilation_w * fx) * ch + k] + off);
                }
            }
        }
        out_a[k] = out_of(c, a, k);
        if (two) {
            out_b[k] = out_of(c, b, k);
        }
    }
}


/*
 * acc[0..3] += sum over the taps of (x + offset) * w, channels 0..3 of the words at in + taps[2i] and
 * filter + taps[2i + 1].  r0 = taps, r1 = end of taps, r2 = in, r3 = filter, 5th argument acc,
 * 6th the offset packed in both halfwords.
 */
__attribute__((naked)) static void dw_taps_4ch(const int32_t *taps __attribute__((unused)),
                                               const int32_t *end __attribute__((unused)),
                                               const int8_t *in __attribute__((unused)),
                                               const int8_t *filter __attribute__((unused)),
                                               int32_t *acc __attribute__((unused)),
                                               int32_t off2 __attribute__((unused))) {
    __asm__ volatile(
        "push    {r4-r11, lr}\n"
        "ldr     r12, [sp, #36]\n"
        "ldm     r12, {r4-r7}\n"
        "ldr     r12, [sp, #40]\n"
        "cmp     r0, r1\n"
        "beq     2f\n"
        "1:\n"
        "ldrd    r10, r8, [r0], #8\n"
        "ldr     r10, [r2, r10]\n"
        "ldr     r8, [r3, r8]\n"
        "sxtb16  r9, r8, ror #8\n"
        "sxtb16  r8, r8\n"
        "sxtab16 r11, r12, r10\n"
        "smlabb  r4, r11, r8, r4\n"
        "smlatt  r6, r11, r8, r6\n"
        "sxtab16 r11, r12, r10, ror #8\n"
        "smlabb  r5, r11, r9, r5\n"
        "smlatt  r7, r11, r9, r7\n"
        "cmp     r0, r1\n"
        "bne     1b\n"
        "2:\n"
        "ldr     r12, [sp, #36]\n"
        "stm     r12, {r4-r7}\n"
        "pop     {r4-r11, pc}\n");
}

/*
 * The taps of filter rows [fy0, fy1) x columns [fx0, fx1) (the in-image ones of a pixel), input offsets
 * relative to the pixel's filter origin; returns their count.  Neighbouring pixels with the same valid
 * window (all interior ones) share the list.
 */
static int list_taps(const dw_ctx_t *c, int fy0, int fy1, int fx0, int fx1, int32_t taps[2 * DW_MAX_TAPS]) {
    const tm_conv_params_t *p = c->p;
    int n = 0;
    for (int fy = fy0; fy < fy1; ++fy) {
        for (int fx = fx0; fx < fx1; ++fx, ++n) {
            taps[2 * n] = (fy * p->dilation_h * c->in_w + fx * p->dilation_w) * c->ch;
            taps[2 * n + 1] = (fy * c->f_w + fx) * c->ch;
        }
    }
    return n;
}


static void prepare_rq(const dw_ctx_t *c, dw_rq_t *rq) {
    for (int k = 0; k < c->ch; ++k) {
        const int32_t shift = c->p->out_shift[k];
        rq[k].multiplier = c->p->out_multiplier[k];
        rq[k].right_m1 = shift < 0 ? -shift - 1 : -1 - shift;
    }
}

static inline int32_t dw_requantize(const dw_rq_t *q, int32_t acc) {
    if (q->right_m1 >= 0) {
        return tm_dsp_requantize_right(acc, q->multiplier, (int32_t)(1u << q->right_m1), q->right_m1);
    }
    return tm_dsp_requantize(acc, q->multiplier, -1 - q->right_m1);
}

/* Requantized outputs of channels k..k+3. */
static inline void store_4ch(const dw_ctx_t *c, const dw_rq_t *rq, const int32_t acc[4], int k, int8_t *out) {
    const int32_t out_offset = c->p->output_offset, lo = c->p->act_min, hi = c->p->act_max;
    for (int i = 0; i < 4; ++i) {
        int32_t v = dw_requantize(&rq[k + i], acc[i]) + out_offset;
        v = v < lo ? lo : v;
        out[k + i] = (int8_t)(v > hi ? hi : v);
    }
}

/* One output pixel: channels by 4 down the tap list, the ch % 4 last ones one by one. */
static void dw_pixel_taps(const dw_ctx_t *c, const dw_rq_t *rq, const int8_t *in_b, const int32_t *taps, int n,
                          int8_t *out) {
    const tm_conv_params_t *p = c->p;
    const int32_t off2 = tm_pack_offset(p->input_offset);
    int k = 0;
    for (; k + 3 < c->ch; k += 4) {
        int32_t acc[4] = {bias_of(c, k), bias_of(c, k + 1), bias_of(c, k + 2), bias_of(c, k + 3)};
        dw_taps_4ch(taps, taps + 2 * n, in_b + k, c->filter + k, acc, off2);
        store_4ch(c, rq, acc, k, out);
    }
    for (; k < c->ch; ++k) {
        int32_t a = bias_of(c, k);
        for (int i = 0; i < n; ++i) {
            a += c->filter[taps[2 * i + 1] + k] * (in_b[taps[2 * i] + k] + p->input_offset);
        }
        out[k] = out_of(c, a, k);
    }
}

/* Work of dw_pixel_groups (read and updated by the assembly: keep the field offsets). */
typedef struct {
    const int32_t *taps, *taps_end; /* +0 +4 the pixel's tap list */
    const int8_t *in;               /* +8  input at the pixel's filter origin, channel of the group */
    const int8_t *filter;           /* +12 filter, channel of the group */
    const int32_t *bias;            /* +16 bias of the group */
    const int32_t *table;           /* +20 per channel: multiplier, right shift - 1, 2^(right shift - 1) */
    int8_t *out;                    /* +24 */
    int32_t off2;                   /* +28 input offset in both halfwords */
    int32_t out_offset, act_min, act_max; /* +32 +36 +40 */
    int32_t groups;                 /* +44 groups of 4 channels left (>= 1) */
} dw_job_t;

#define DW_RQ(ACC)                          \
    "ldm     r0!, {r8-r10}\n"                \
    "mov.w   r11, #0x40000000\n"             \
    "mov.w   r12, #0\n"                      \
    "smlal   r11, r12, " ACC ", r8\n"        \
    "add     " ACC ", r10, r12, asr #31\n"   \
    "adds    r11, r11, " ACC ", lsl #31\n"   \
    "adc     r12, r12, " ACC ", asr #1\n"    \
    "asr     r12, r12, r9\n"                 \
    "add     r12, r12, r2\n"                 \
    "cmp     r12, r3\n"                      \
    "it      lt\n"                           \
    "movlt   r12, r3\n"                      \
    "cmp     r12, lr\n"                      \
    "it      gt\n"                           \
    "movgt   r12, lr\n"                      \
    "strb    r12, [r1], #1\n"

/*
 * All groups of 4 channels of one output pixel (18 instructions of bookkeeping per group): bias + the
 * taps (13 instructions per tap, as dw_taps_4ch), then the requantization of tm_dsp_requantize_right, + output offset, clamp (16 per
 * output), for ops whose shifts are all right shifts;
 * dw_pixel_groups_sat: the output offset folded into the rounding constant and SSAT as the clamp (10 per
 * output), for a full int8 activation range (tm_dsp_rq_table).
 */
#define DW_GROUPS_ASM(LOADS, RQ)                                            \
    "push    {r0, r4-r11, lr}\n"                                            \
    "3:\n"                                                                  \
    "ldr     r12, [sp]\n"                                                   \
    "ldm     r12, {r0-r3, lr}\n" /* taps, taps_end, in, filter, bias */     \
    "ldm     lr!, {r4-r7}\n"                                                \
    "add     r8, r2, #4\n"                                                  \
    "add     r9, r3, #4\n"                                                  \
    "add     r10, r12, #8\n"                                                \
    "stm     r10, {r8, r9, lr}\n" /* the next group's in, filter, bias */   \
    "ldr     r12, [r12, #28]\n"                                             \
    "cmp     r0, r1\n"                                                      \
    "beq     2f\n"                                                          \
    "1:\n"                                                                  \
    "ldrd    r10, r8, [r0], #8\n"                                           \
    "ldr     r10, [r2, r10]\n"                                              \
    "ldr     r8, [r3, r8]\n"                                                \
    "sxtb16  r9, r8, ror #8\n"                                              \
    "sxtb16  r8, r8\n"                                                      \
    "sxtab16 r11, r12, r10\n"                                               \
    "smlabb  r4, r11, r8, r4\n"                                             \
    "smlatt  r6, r11, r8, r6\n"                                             \
    "sxtab16 r11, r12, r10, ror #8\n"                                       \
    "smlabb  r5, r11, r9, r5\n"                                             \
    "smlatt  r7, r11, r9, r7\n"                                             \
    "cmp     r0, r1\n"                                                      \
    "bne     1b\n"                                                          \
    "2:\n"                                                                  \
    "ldr     r12, [sp]\n"                                                   \
    "ldrd    r0, r1, [r12, #20]\n" /* table, out */                         \
    LOADS                                                                   \
    RQ("r4")                                                                \
    RQ("r5")                                                                \
    RQ("r6")                                                                \
    RQ("r7")                                                                \
    "ldr     r12, [sp]\n"                                                   \
    "strd    r0, r1, [r12, #20]\n"                                          \
    "ldr     r0, [r12, #44]\n"                                              \
    "subs    r0, r0, #1\n"                                                  \
    "str     r0, [r12, #44]\n"                                              \
    "bne     3b\n"                                                          \
    "pop     {r0, r4-r11, pc}\n"

/* output offset, act_min, act_max for DW_RQ */
#define DW_RQ_LOADS                         \
    "ldr     r2, [r12, #32]\n"               \
    "ldr     r3, [r12, #36]\n"               \
    "ldr     lr, [r12, #40]\n"

#define DW_RQ_SAT(ACC)                      \
    "ldm     r0!, {r8-r10}\n"                \
    "mov.w   r11, #0x40000000\n"             \
    "mov.w   r12, #0\n"                      \
    "smlal   r11, r12, " ACC ", r8\n"        \
    "add     " ACC ", r10, r12, asr #31\n"   \
    "adds    r11, r11, " ACC ", lsl #31\n"   \
    "adc     r12, r12, " ACC ", asr #1\n"    \
    "asr     r12, r12, r9\n"                 \
    "ssat    r12, #8, r12\n"                 \
    "strb    r12, [r1], #1\n"

/*
 * The same over a filter pre-widened once per op (dw_by_taps: per group of 4 channels, per tap, the
 * SXTB16 words of channels 0,2 and 1,3, so a group's taps are consecutive and its filter pointer ends at
 * the next group's), for pixels whose window is the whole filter: 11 instructions per tap.
 */
#define DW_GROUPS_WIDE_ASM(LOADS, RQ)                                       \
    "push    {r0, r4-r11, lr}\n"                                            \
    "3:\n"                                                                  \
    "ldr     r12, [sp]\n"                                                   \
    "ldm     r12, {r0-r3, lr}\n" /* taps, taps_end, in, filter, bias */     \
    "ldm     lr!, {r4-r7}\n"                                                \
    "add     r8, r2, #4\n"                                                  \
    "str     r8, [r12, #8]\n"                                               \
    "str     lr, [r12, #16]\n"                                              \
    "ldr     r12, [r12, #28]\n"                                             \
    "cmp     r0, r1\n"                                                      \
    "beq     2f\n"                                                          \
    "1:\n"                                                                  \
    "ldr     r10, [r0], #8\n"                                               \
    "ldr     r10, [r2, r10]\n"                                              \
    "ldrd    r8, r9, [r3], #8\n"                                            \
    "sxtab16 r11, r12, r10\n"                                               \
    "smlabb  r4, r11, r8, r4\n"                                             \
    "smlatt  r6, r11, r8, r6\n"                                             \
    "sxtab16 r11, r12, r10, ror #8\n"                                       \
    "smlabb  r5, r11, r9, r5\n"                                             \
    "smlatt  r7, r11, r9, r7\n"                                             \
    "cmp     r0, r1\n"                                                      \
    "bne     1b\n"                                                          \
    "2:\n"                                                                  \
    "ldr     r12, [sp]\n"                                                   \
    "str     r3, [r12, #12]\n" /* the next group's widened filter */        \
    "ldrd    r0, r1, [r12, #20]\n" /* table, out */                         \
    LOADS                                                                   \
    RQ("r4")                                                                \
    RQ("r5")                                                                \
    RQ("r6")                                                                \
    RQ("r7")                                                                \
    "ldr     r12, [sp]\n"                                                   \
    "strd    r0, r1, [r12, #20]\n"                                          \
    "ldr     r0, [r12, #44]\n"                                              \
    "subs    r0, r0, #1\n"                                                  \
    "str     r0, [r12, #44]\n"                                              \
    "bne     3b\n"                                                          \
    "pop     {r0, r4-r11, pc}\n"

__attribute__((naked)) static void dw_pixel_groups_wide(dw_job_t *job __attribute__((unused))) {
    __asm__ volatile(DW_GROUPS_WIDE_ASM(DW_RQ_LOADS, DW_RQ));
}

__attribute__((naked)) static void dw_pixel_groups_wide_sat(dw_job_t *job __attribute__((unused))) {
    __asm__ volatile(DW_GROUPS_WIDE_ASM("", DW_RQ_SAT));
}

__attribute__((naked)) static void dw_pixel_groups(dw_job_t *job __attribute__((unused))) {
    __asm__ volatile(DW_GROUPS_ASM(DW_RQ_LOADS, DW_RQ));
}

__attribute__((naked)) static void dw_pixel_groups_sat(dw_job_t *job __attribute__((unused))) {
    __asm__ volatile(DW_GROUPS_ASM("", DW_RQ_SAT));
}

/* The table of dw_pixel_groups (3 words per channel), if every shift is a right shift (1, or 2 for
 * dw_pixel_groups_sat's table); else 0. */
static int build_dw_table(const tm_conv_params_t *p, int ch, int32_t *table) {
    return tm_dsp_rq_table(p->out_multiplier, p->out_shift, ch, p->output_offset, p->act_min, p->act_max, table);
}

/* One pixel on the assembly path: the groups of 4 channels, then the ch % 4 last ones in C. */
static void dw_pixel_asm(const dw_ctx_t *c, const dw_rq_t *rq, const int32_t *table, int sat, const int32_t *wide,
                         const int8_t *in_b, const int32_t *taps, int n, int8_t *out) {
    const tm_conv_params_t *p = c->p;
    const int groups = c->ch / 4;
    if (groups > 0) {
        dw_job_t job = {taps, taps + 2 * n, in_b, wide ? (const int8_t *)wide : c->filter, c->bias, table, out,
                        tm_pack_offset(p->input_offset), p->output_offset, p->act_min, p->act_max, groups};
        if (wide) {
            (sat ? dw_pixel_groups_wide_sat : dw_pixel_groups_wide)(&job);
        } else {
            (sat ? dw_pixel_groups_sat : dw_pixel_groups)(&job);
        }
    }
    for (int k = 4 * groups; k < c->ch; ++k) {
        int32_t a = c->bias[k];
        for (int i = 0; i < n; ++i) {
            a += c->filter[taps[2 * i + 1] + k] * (in_b[taps[2 * i] + k] + p->input_offset);
        }
        int32_t v = dw_requantize(&rq[k], a) + p->output_offset;
        v = v < p->act_min ? p->act_min : v;
        out[k] = (int8_t)(v > p->act_max ? p->act_max : v);
    }
}

/*
 * Runs of interior pixels of a 3x3 filter (dilation 1, channels a multiple of 4, up to DW3_MAX_CH, the
 * activation range all of int8): the pixels of an output row whose window is the whole filter, in one
 * assembly call.  Per group of 4 channels the 9 taps are fixed offsets (0, ch, 2 ch in each of 3 rows):
 * 8 instructions per tap (LDR, LDRD of the pre-widened filter, 2 SXTAB16, 4 SMLAxx) with no tap list,
 * and the requantization of conv_2d_wide.c (filter and bias doubled once per op, so the sums are 2 acc:
 * SMMLAR onto the rounding constant with the output offset less the sum's sign, ASR, SSAT: 5 instructions
 * per output, and one word stored per group).
 * Table per group (DW3_GROUP_WORDS): 4 doubled biases, 9 x 2 doubled widened filter words, M, c, r x 4.
 */

/* Work of dw3_run (read by the assembly: keep the field offsets). */
typedef struct {
    const int8_t *in;      /* +0  input at the first pixel's filter origin, channel 0 */
    int8_t *out;           /* +4  output of the first pixel */
    const int32_t *tab;    /* +8  DW3_GROUP_WORDS per group */
    const int32_t *tab_end; /* +12 */
    int32_t step;          /* +16 input bytes from a pixel's origin to the next one's */
    int32_t n;             /* +20 pixels (>= 1) */
    int32_t ch;            /* +24 */
    int32_t row;           /* +28 input bytes per row */
    int32_t off2;          /* +32 input offset in both halfwords */
} dw3_job_t;

#define DW3_TAP(ADDR)                   \
    "ldr     r10, " ADDR "\n"            \
    "ldrd    r8, r9, [r1], #8\n"         \
    "sxtab16 r11, r12, r10\n"            \
    "smlabb  r4, r11, r8, r4\n"          \
    "smlatt  r6, r11, r8, r6\n"          \
    "sxtab16 r11, r12, r10, ror #8\n"    \
    "smlabb  r5, r11, r9, r5\n"          \
    "smlatt  r7, r11, r9, r7\n"

#define DW3_RQ(A)                          \
    "ldm     r1!, {r8-r10}\n"               \
    "sub     r11, r9, " A ", lsr #31\n"     \
    "smmlar  " A ", " A ", r8, r11\n"       \
    "asr     " A ", " A ", r10\n"           \
    "ssat    " A ", #8, " A "\n"

/* r0 taps, r1 table, r2 ch, r3 2 ch, lr row, r12 offset, r4-r7 sums of channels 0-3.  Stack: [sp] the
 * pixel's origin, +4 out, +8 table, +12 table end, +16 step, +20 pixels left. */
__attribute__((naked)) static void dw3_run(const dw3_job_t *job __attribute__((unused))) {
    __asm__ volatile(
        "push    {r4-r11, lr}\n"
        "sub     sp, sp, #24\n"
        "ldm     r0, {r1-r9}\n"
        "stm     sp, {r1-r6}\n"
        "mov     r2, r7\n"
        "lsl     r3, r7, #1\n"
        "mov     lr, r8\n"
        "mov     r12, r9\n"
        "ldr     r1, [sp, #8]\n"
        "ldr     r0, [sp]\n"
        "4:\n"
        "ldm     r1!, {r4-r7}\n"
        DW3_TAP("[r0]") DW3_TAP("[r0, r2]") DW3_TAP("[r0, r3]")
        "add     r0, r0, lr\n"
        DW3_TAP("[r0]") DW3_TAP("[r0, r2]") DW3_TAP("[r0, r3]")
        "add     r0, r0, lr\n"
        DW3_TAP("[r0]") DW3_TAP("[r0, r2]") DW3_TAP("[r0, r3]")
        "sub     r0, r0, lr, lsl #1\n"
        "add     r0, r0, #4\n"
        DW3_RQ("r4") DW3_RQ("r5") DW3_RQ("r6") DW3_RQ("r7")
        "ldr     r11, [sp, #4]\n"
        "bfi     r4, r5, #8, #8\n" /* the four channels: one word */
        "bfi     r4, r6, #16, #8\n"
        "bfi     r4, r7, #24, #8\n"
        "str     r4, [r11], #4\n"
        "str     r11, [sp, #4]\n"
        "ldr     r8, [sp, #12]\n"
        "cmp     r1, r8\n"
        "bne     4b\n"
        "ldr     r0, [sp]\n"
        "ldr     r8, [sp, #16]\n"
        "add     r0, r0, r8\n"
        "str     r0, [sp]\n"
        "ldr     r1, [sp, #8]\n"
        "ldr     r8, [sp, #20]\n"
        "subs    r8, r8, #1\n"
        "str     r8, [sp, #20]\n"
        "bne     4b\n"
        "add     sp, sp, #24\n"
        "pop     {r4-r11, pc}\n");
}

/* dw3_run's table for all channels; 0 when a channel's requantization is not covered. */
static int build_dw3_table(const dw_ctx_t *c, int32_t *tab) {
    const tm_conv_params_t *p = c->p;
    for (int g = 0; g < c->ch / 4; ++g, tab += DW3_GROUP_WORDS) {
        for (int i = 0; i < 4; ++i) {
            const int k = 4 * g + i;
            if (tm_dsp_wide_rq(p, c->filter + k, 9, c->ch, c->bias, k, tab + 22 + 3 * i) == TM_DSP_WIDE_UNSUPPORTED) {
                return 0;
            }
            tab[i] = 2 * bias_of(c, k); /* |bias| < 2^30 or a constant channel (sums ignored) */
        }
        for (int t = 0; t < 9; ++t) {
            const uint32_t f = tm_ld32(c->filter + t * c->ch + 4 * g);
            const int32_t lo = __sxtb16(f), hi = tm_sxtb16_ror8(f);
            tab[4 + 2 * t] = __sadd16(lo, lo);
            tab[4 + 2 * t + 1] = __sadd16(hi, hi);
        }
    }
    return 1;
}

static void dw_by_taps(const dw_ctx_t *c, const int8_t *in_b, int f_h, int out_h, int out_w, int8_t *out_b) {
    const tm_conv_params_t *p = c->p;
    int32_t taps[2 * DW_MAX_TAPS];
    dw_rq_t rq[DW_MAX_PREPARED];
    int32_t table[3 * DW_MAX_PREPARED];
    prepare_rq(c, rq);
    const int kind = c->bias ? build_dw_table(p, c->ch, table) : 0, use_asm = kind != 0;
    /* the filter widened for the pixels that see all of it (dw_pixel_groups_wide) */
    const int full = f_h * c->f_w, groups = c->ch / 4;
    /* the pre-widened filter, or dw3_run's table (interior pixels of a 3x3 filter) */
    int32_t wide[DW_SHARED_WORDS] __attribute__((aligned(8)));
    /* output columns [rx0, rx1) and rows [ry0, ry1) whose window is the whole 3x3 filter */
    const int rx0 = (p->pad_w + p->stride_w - 1) / p->stride_w, ry0 = (p->pad_h + p->stride_h - 1) / p->stride_h;
    int rx1 = c->in_w >= 3 ? (c->in_w - 3 + p->pad_w) / p->stride_w + 1 : 0;
    int ry1 = c->in_h >= 3 ? (c->in_h - 3 + p->pad_h) / p->stride_h + 1 : 0;
    rx1 = rx1 < out_w ? rx1 : out_w, ry1 = ry1 < out_h ? ry1 : out_h;
    const int interior = rx1 > rx0 && ry1 > ry0 ? (rx1 - rx0) * (ry1 - ry0) : 0;
    /* the table costs about as much as 4 interior pixels */
    const int use_run = f_h == 3 && c->f_w == 3 && p->dilation_h == 1 && p->dilation_w == 1 && (c->ch & 3) == 0 &&
                        c->ch <= DW3_MAX_CH && p->act_min == -128 && p->act_max == 127 && interior >= 8 &&
                        build_dw3_table(c, wide);
    const int use_wide = !use_run && use_asm && groups * full * 2 <= DW_WIDE_WORDS;
    if (use_wide) {
        for (int g = 0; g < groups; ++g) {
            for (int t = 0; t < full; ++t) {
                const uint32_t f = tm_ld32(c->filter + t * c->ch + 4 * g);
                wide[2 * (g * full + t)] = __sxtb16(f);
                wide[2 * (g * full + t) + 1] = tm_sxtb16_ror8(f);
            }
        }
    }
    int window[4] = {-1, -1, -1, -1}, n = 0;
    for (int oy = 0; oy < out_h; ++oy) {
        const int y0 = oy * p->stride_h - p->pad_h;
        int fy0, fy1;
        tm_tap_range(y0, f_h, p->dilation_h, c->in_h, &fy0, &fy1);
        const int row_run = use_run && fy0 == 0 && fy1 == 3 && rx1 > rx0;
        for (int ox = 0; ox < out_w; ++ox) {
            if (row_run && ox == rx0) {
                const int x = rx0 * p->stride_w - p->pad_w;
                const dw3_job_t job = {in_b + (y0 * c->in_w + x) * c->ch, out_b + (oy * out_w + rx0) * c->ch, wide,
                                       wide + groups * DW3_GROUP_WORDS, p->stride_w * c->ch, rx1 - rx0, c->ch,
                                       c->in_w * c->ch, tm_pack_offset(p->input_offset)};
                dw3_run(&job);
                ox = rx1 - 1;
                continue;
            }
            const int x0 = ox * p->stride_w - p->pad_w;
            int fx0, fx1;
            tm_tap_range(x0, c->f_w, p->dilation_w, c->in_w, &fx0, &fx1);
            if (fy0 != window[0] || fy1 != window[1] || fx0 != window[2] || fx1 != window[3]) {
                n = list_taps(c, fy0, fy1, fx0, fx1, taps);
                window[0] = fy0, window[1] = fy1, window[2] = fx0, window[3] = fx1;
            }
            /* the filter origin may lie outside the input (padding): only in-image taps are read */
            const intptr_t origin_offset = (intptr_t)(y0 * c->in_w + x0) * c->ch;
            const int8_t *origin = (const int8_t *)((uintptr_t)in_b + (uintptr_t)origin_offset);
            int8_t *out = out_b + (oy * out_w + ox) * c->ch;
            if (use_asm) {
                dw_pixel_asm(c, rq, table, kind == 2, use_wide && n == full ? wide : 0, origin, taps, n, out);
            } else {
                dw_pixel_taps(c, rq, origin, taps, n, out);
            }
        }
    }
}

tm_status_t tm_kernel_depthwise_conv_2d_dsp(const tm_model_t *model, const tm_op_t *op) {
    const tm_conv_params_t *p = (const tm_conv_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *f_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const int8_t *input = (const int8_t *)tm_in_data(model, op, 0);
    const int8_t *filter = (const int8_t *)tm_in_data(model, op, 1);
    int8_t *output = (int8_t *)tm_out_data(model, op, 0);
    if (!in_t || !f_t || !TM_KERNEL_TAKES(depthwise_conv_2d, dsp, in_t->dtype) || p->depth_multiplier != 1 ||
        in_t->rank != 4 || f_t->rank != 4 || out_t->rank != 4 || out_t->dims[3] != in_t->dims[3] ||
        f_t->dims[3] != in_t->dims[3] || !input || !filter || !output) {
        return tm_next_depthwise_conv_2d_dsp(model, op);
    }
    dw_ctx_t c = {
        .p = p, .filter = filter, .bias = (const int32_t *)tm_in_data(model, op, 2),
        .in_h = in_t->dims[1], .in_w = in_t->dims[2], .ch = in_t->dims[3], .f_w = f_t->dims[2],
    };
    const int f_h = f_t->dims[1];
    const int batches = in_t->dims[0], out_h = out_t->dims[1], out_w = out_t->dims[2];
    for (int b = 0; b < batches; ++b) {
        const int8_t *in_b = input + b * c.in_h * c.in_w * c.ch;
        int8_t *out_b = output + b * out_h * out_w * c.ch;
        if (f_h * c.f_w <= DW_MAX_TAPS && c.ch <= DW_MAX_PREPARED) { /* the scratch of both */
            if (f_h == 3 && c.f_w == 3 &&
                tm_dsp_depthwise_planar(p, in_b, filter, c.bias, out_b, c.in_h, c.in_w, c.ch, out_h, out_w)) {
                continue;
            }
            dw_by_taps(&c, in_b, f_h, out_h, out_w, out_b);
            continue;
        }
        for (int oy = 0; oy < out_h; ++oy) {
            c.y0 = oy * p->stride_h - p->pad_h;
            tm_tap_range(c.y0, f_h, p->dilation_h, c.in_h, &c.fy0, &c.fy1);
            int8_t *out_row = output + ((b * out_h + oy) * out_w) * c.ch;
            int ox = 0;
            while (ox < out_w) {
                const int xa = ox * p->stride_w - p->pad_w, xb = xa + p->stride_w;
                int fx0, fx1, gx0 = -1, gx1 = -1;
                tm_tap_range(xa, c.f_w, p->dilation_w, c.in_w, &fx0, &fx1);
                if (ox + 1 < out_w) {
                    tm_tap_range(xb, c.f_w, p->dilation_w, c.in_w, &gx0, &gx1);
                }
                const int two = gx0 == fx0 && gx1 == fx1;
                dw_pixels(&c, in_b, xa, xb, two, fx0, fx1, out_row + ox * c.ch, out_row + (ox + 1) * c.ch);
                ox += two ? 2 : 1;
            }
        }
    }
    return TM_OK;
}

#endif /* TM_HAVE_DSP */
