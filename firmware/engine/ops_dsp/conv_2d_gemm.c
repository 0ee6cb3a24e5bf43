/*
 * CONV_2D, int8, im2col + matrix product path of the DSP kernel (conv_2d.c
 * calls it when the taps of one output pixel fit the column buffer).
 *
 * Two output pixels at a time: their K = f_h * f_w * in_c taps are copied into
 * a column buffer on the stack, already widened to int16 with the input offset
 * added (out-of-image taps are 0, which is what skipping them adds).  The
 * widening is paid once per pixel instead of once per output channel, so the
 * inner loop only widens weights: per 4 taps it loads one weight word for each
 * of two output channels (SXTB16 twice each), both pixels' 4 taps (two LDRD),
 * and does 8 SMLAD, 16 MACs.
 *
 * Buffer layout (int16): for every group of 4 taps, 4 values of pixel 0 then
 * 4 of pixel 1, each group in the order SXTB16 widens a weight word (taps
 * 0, 2, 1, 3); the K % 4 last taps follow in natural order, 4 slots per pixel.
 *
 * s16_natural: int16x8 columns keep the taps in natural order (0, 1, 2, 3: an
 * int16 input's words copied as they are, no PKHBT/PKHTB) where the weights
 * they meet are widened ones, which are then widened in the same order: the
 * compiler's for int16x8 ops (host/compiler/ops/conv.py, wide_weights) and
 * widen_weights_s16's.  SMLAD pairs the two halfwords of a word with those of
 * the other, so any order works when columns and weights share it; only
 * gemm_pairs, which widens int8 weights with SXTB16 as it goes, needs that one.
 */
#include "dsp_conv.h"

/* Stack buffers (their sizes are the scratch of tm_dsp_conv_2d_gemm_scratch_bytes). */
#define GEMM_COLUMN_SLOTS (2 * TM_DSP_GEMM_MAX_TAPS + 8) /* int16: the two pixels' taps */
#define GEMM_STAGE_BYTES (TM_DSP_GEMM_MAX_TAPS + 4)      /* int8 taps of one pixel, in_c % 4 != 0 */
#define GEMM_CHUNK_PAIRS 64 /* channel pairs per call of gemm_pairs: their 4 sums each */
#define RQ_TABLE_CHANNELS 128 /* channels whose requantization table (3 words each) is built once per op */
#define S16_CHUNK_PAIRS 32    /* int16x8: channel pairs per chunk, int32 and int64 sums */
#define S16_STAGE_TAPS 512    /* int16x8, in_c % 4 != 0: the taps of one pixel staged (int16) before permuting */
#define S16_TABLE_CHANNELS 128 /* int16x8, int64 bias: channels of the requantization table (4 words each) */
#define S16_WIDE_GROUPS 72     /* int16x8 widened-weight path: groups of 4 taps (K <= 288) of its unrolled run */
#define S16_WIDE_WEIGHT_BYTES 9216 /* and its widened weights per chunk of channels (on the stack) */

int32_t tm_dsp_conv_2d_gemm_scratch_bytes(int32_t in_c, uint8_t dtype) {
    const int32_t columns = GEMM_COLUMN_SLOTS * (int32_t)sizeof(int16_t);
    if (dtype == TM_INT16) { /* conv_s16_pairs (columns, table, then the int64 sums or the staged taps) or
                              * conv_s16_wide (widened weights, columns, sums, table, staged taps) */
        const int32_t table = 4 * S16_TABLE_CHANNELS * (int32_t)sizeof(int32_t);
        const int32_t sums = 4 * S16_CHUNK_PAIRS * (int32_t)(sizeof(int64_t) + sizeof(int32_t));
        const int32_t stage = (in_c & 3) ? (S16_STAGE_TAPS + 4) * (int32_t)sizeof(int16_t) : 0;
        const int32_t pairs = columns + table + (stage > sums ? stage : sums); /* conv_s16_pairs */
        const int32_t wide = S16_WIDE_WEIGHT_BYTES + 8 * S16_WIDE_GROUPS * (int32_t)sizeof(int16_t) +
                             (4 + 8) * S16_CHUNK_PAIRS * (int32_t)sizeof(int32_t) + stage; /* conv_s16_wide */
        return wide > pairs ? wide : pairs;
    }
    const int32_t table = 3 * RQ_TABLE_CHANNELS * (int32_t)sizeof(int32_t);
    const int32_t sums = 4 * GEMM_CHUNK_PAIRS * (int32_t)sizeof(int32_t); /* pixels_pair */
    const int32_t stage = (in_c & 3) ? GEMM_STAGE_BYTES : 0;              /* fill_column_staged, not nested */
    return columns + table + (stage > sums ? stage : sums);
}

#if TM_HAVE_DSP
#include "dsp_common.h"

typedef struct {
    const tm_conv_params_t *p;
    const int8_t *input; /* this batch */
    const int16_t *input16; /* this batch, int16x8 */
    const void *bias_any;   /* int16x8: int32 or int64 bias (p->acc64), or 0 */
    const int8_t *filter;
    const int32_t *bias;
    int in_h, in_w, in_c, f_h, f_w, out_w, out_c;
    int k, k4; /* taps per pixel, and rounded down to a multiple of 4 */
    int padded; /* staged int8 columns with k % 4 != 0: the last group is padded with zeros */
    int32_t out_offset, act_min, act_max;
    const int32_t *rq_table; /* requantize_pairs' table, or 0 */
    int rq_sat;              /* the table is requantize_pairs_sat's */
    const int16_t *w16;      /* int8: the compiler's widened weights (k % 4 == 0, even out_c), or 0 */
    int natural; /* int16x8 columns in natural order (taps 0, 1 and 2, 3: s16_natural), not SXTB16's */
} gemm_ctx_t;

/* Slot of tap k of pixel `col` (0, 1) in the buffer. */
static inline int slot_of(const gemm_ctx_t *g, int k, int col) {
    if (g->natural) {
        return ((k >> 2) << 3) + (col << 2) + (k & 3); /* no tail: natural columns have whole groups */
    }
    if (k < g->k4) {
        return ((k >> 2) << 3) + (col << 2) + (((k & 1) << 1) | ((k >> 1) & 1));
    }
    return (g->k4 << 1) + (col << 2) + (k - g->k4);
}

/* in_c taps at `src` (NULL: outside the image) into slots from tap k (k and in_c multiples of 4). */
static void fill_run_aligned(int16_t *buf, const int8_t *src, int k, int in_c, int col, int32_t off2) {
    uint32_t *dst = (uint32_t *)(void *)(buf + ((k >> 2) << 3) + (col << 2));
    if (!src) {
        for (int i = 0; i < in_c; i += 4, dst += 4) {
            dst[0] = 0, dst[1] = 0;
        }
        return;
    }
    for (int i = 0; i < in_c; i += 4, dst += 4) {
        const uint32_t x = tm_ld32(src + i);
        dst[0] = (uint32_t)__sxtab16(off2, x);
        dst[1] = (uint32_t)tm_sxtab16_ror8(off2, x);
    }
}

/* Taps of pixel `col` from the int8 taps in natural order (stage, k of them), widened by words. */
static void widen_staged(const gemm_ctx_t *g, int16_t *buf, const int8_t *stage, int col) {
    const int32_t off = g->p->input_offset, off2 = tm_pack_offset(off);
    uint32_t *dst = (uint32_t *)(void *)(buf + (col << 2));
    const int groups_end = g->padded ? g->k4 + 4 : g->k4;
    for (int i = 0; i < groups_end; i += 4, dst += 4) {
        const uint32_t x = tm_ld32(stage + i);
        dst[0] = (uint32_t)__sxtab16(off2, x);
        dst[1] = (uint32_t)tm_sxtab16_ror8(off2, x);
    }
    for (int i = groups_end; i < g->k; ++i) {
        buf[slot_of(g, i, col)] = (int16_t)(stage[i] + off);
    }
}

/* n bytes, by (unaligned) words then bytes: runs are short, a call to memcpy costs more. */
static inline void copy_bytes(int8_t *d, const int8_t *s, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        tm_st32(d + i, tm_ld32(s + i));
    }
    for (; i < n; ++i) {
        d[i] = s[i];
    }
}

/*
 * in_c not a multiple of 4 (an RGB first layer, KWS's one-channel input): the taps are first copied
 * as int8 in natural order (out-of-image taps = the input zero point, which adds 0), then widened.
 */
__attribute__((noinline)) static void fill_column_staged(const gemm_ctx_t *g, int16_t *buf, int y0, int x0,
                                                         int col) {
    const tm_conv_params_t *p = g->p;
    int8_t stage[GEMM_STAGE_BYTES];
    const int8_t zp = (int8_t)(-p->input_offset);
    const int run = g->f_w * g->in_c; /* bytes of one filter row */
    int8_t *d = stage;
    for (int fy = 0; fy < g->f_h; ++fy, d += run) {
        const int y = y0 + fy * p->dilation_h;
        if (y < 0 || y >= g->in_h) {
            memset(d, zp, (size_t)run);
            continue;
        }
        const int8_t *row = g->input + y * g->in_w * g->in_c;
        if (p->dilation_w == 1 && x0 >= 0 && x0 + g->f_w <= g->in_w) {
            copy_bytes(d, row + x0 * g->in_c, run); /* the whole filter row is in the image */
            continue;
        }
        for (int fx = 0; fx < g->f_w; ++fx) {
            const int x = x0 + fx * p->dilation_w;
            if (x >= 0 && x < g->in_w) {
                copy_bytes(d + fx * g->in_c, row + x * g->in_c, g->in_c);
            } else {
                memset(d + fx * g->in_c, zp, (size_t)g->in_c);
            }
        }
    }
    for (int i = g->k; i < g->k4 + 4; ++i) {
        stage[i] = zp; /* the padding of the last group: x + offset = 0 */
    }
    widen_staged(g, buf, stage, col);
}

/* The taps of output pixel `pix` (row-major over the output plane) into column `col`. */
static void fill_column(const gemm_ctx_t *g, int16_t *buf, int pix, int col) {
    const tm_conv_params_t *p = g->p;
    const int oy = pix / g->out_w, ox = pix - oy * g->out_w;
    const int y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    if (g->in_c & 3) {
        fill_column_staged(g, buf, y0, x0, col);
        return;
    }
    const int32_t off2 = tm_pack_offset(p->input_offset);
    const int whole_rows = p->dilation_w == 1 && x0 >= 0 && x0 + g->f_w <= g->in_w;
    int k = 0;
    for (int fy = 0; fy < g->f_h; ++fy) {
        const int y = y0 + fy * p->dilation_h;
        const int row_ok = y >= 0 && y < g->in_h;
        if (row_ok && whole_rows) { /* the filter row's taps are one run of f_w * in_c bytes */
            fill_run_aligned(buf, g->input + (y * g->in_w + x0) * g->in_c, k, g->f_w * g->in_c, col, off2);
            k += g->f_w * g->in_c;
            continue;
        }
        for (int fx = 0; fx < g->f_w; ++fx, k += g->in_c) {
            const int x = x0 + fx * p->dilation_w;
            const int8_t *src = row_ok && x >= 0 && x < g->in_w ? g->input + (y * g->in_w + x) * g->in_c : 0;
            fill_run_aligned(buf, src, k, g->in_c, col, off2);
        }
    }
}

/* Work of gemm_pairs (read and updated by the assembly: keep the field offsets). */
typedef struct {
    const int16_t *buf; /* +0  the two pixels' taps */
    const int8_t *w;    /* +4  weights of the first channel */
    int32_t dw;         /* +8  offset of the second channel's weights (k, or 0 for a lone last channel) */
    int32_t k4;         /* +12 taps in groups of 4 */
    int32_t w_step;     /* +16 from the end of a channel's groups to the next pair's first channel */
    int32_t pairs;      /* +20 channel pairs left (>= 1) */
    int32_t *acc;       /* +24 where the next pair's 4 sums go (pixel 0 ch 0, ch 1, pixel 1 ch 0, ch 1) */
    const int32_t *bias; /* +28 the sums start from bias[0] and bias[bias_d1 / 4] */
    int32_t bias_d1;    /* +32 bytes to the second channel's bias (4, or 0) */
    int32_t bias_step;  /* +36 bytes to the next pair's bias (8, or 0 without a bias) */
} gemm_job_t;

/* One group of 4 taps of both pixels and both channels: the weights (GEMM_LOAD_WEIGHTS), then 8 SMLAD. */
#define GEMM_GROUP                                                                                        \
        GEMM_LOAD_WEIGHTS                                                                                     \
        "ldrd    r12, lr, [r0, #8]\n"                                                                         \
        "smlad   r6, r12, r8, r6\n"                                                                           \
        "smlad   r7, r12, r10, r7\n"                                                                          \
        "smlad   r6, lr, r9, r6\n"                                                                            \
        "smlad   r7, lr, r11, r7\n"                                                                           \
        "ldrd    r12, lr, [r0], #16\n"                                                                        \
        "smlad   r4, r12, r8, r4\n"                                                                           \
        "smlad   r5, r12, r10, r5\n"                                                                          \
        "smlad   r4, lr, r9, r4\n"                                                                            \
        "smlad   r5, lr, r11, r5\n"

/*
 * For `pairs` channel pairs: bias + the 4 dot products over the k4 grouped taps, stored to acc.  In assembly:
 * gcc keeps the 14 live values of the inner loop (4 sums, 4 widened weights, 2 input words, 4
 * pointers) in registers only when told to.  Inner loop (two groups per pass): 17 instructions per
 * 16 MACs; per pair ~22.
 */
#define GEMM_PAIRS_ASM                                                                                    \
        "push    {r0, r4-r11, lr}\n"                                                                          \
        "ldr     r1, [r0, #4]\n"                                                                              \
        "ldr     r2, [r0, #8]\n"                                                                              \
        "3:\n"                                                                                                \
        "ldr     r12, [sp]\n"                                                                                 \
        "ldr     r0, [r12, #0]\n"                                                                             \
        "ldr     lr, [r12, #12]\n"                                                                            \
        "add     r3, r1, lr\n"                                                                                \
        "ldrd    r4, r5, [r12, #28]\n"                                                                        \
        "ldr     r5, [r4, r5]\n"                                                                              \
        "ldr     r4, [r4]\n"                                                                                  \
        "mov     r6, r4\n"                                                                                    \
        "mov     r7, r5\n"                                                                                    \
        "cmp     r1, r3\n"                                                                                    \
        "beq     2f\n"                                                                                        \
        "tst     lr, #" GEMM_GROUP_BYTES "\n" /* an odd number of groups: start with the second copy */       \
        "bne     5f\n"                                                                                        \
        "1:\n"                                                                                                \
        GEMM_GROUP                                                                                            \
        "5:\n"                                                                                                \
        GEMM_GROUP                                                                                            \
        "cmp     r1, r3\n"                                                                                    \
        "bne     1b\n"                                                                                        \
        "2:\n"                                                                                                \
        "ldr     r12, [sp]\n"                                                                                 \
        "ldr     r0, [r12, #24]\n"                                                                            \
        "stm     r0!, {r4-r7}\n"                                                                              \
        "str     r0, [r12, #24]\n"                                                                            \
        "ldr     r0, [r12, #28]\n"                                                                            \
        "ldr     r4, [r12, #36]\n"                                                                            \
        "add     r0, r0, r4\n"                                                                                \
        "str     r0, [r12, #28]\n"                                                                            \
        "ldrd    r0, r4, [r12, #16]\n"                                                                        \
        "add     r1, r1, r0\n"                                                                                \
        "subs    r4, r4, #1\n"                                                                                \
        "str     r4, [r12, #20]\n"                                                                            \
        "bne     3b\n"                                                                                        \
        "pop     {r0, r4-r11, pc}\n"

/* int8 weights, widened as the loop goes (dw: the second channel's offset). */
#define GEMM_LOAD_WEIGHTS                                                                                   \
        "ldr     r12, [r1, r2]\n"                                                                            \
        "ldr     lr, [r1], #4\n"                                                                             \
        "sxtb16  r8, lr\n"                                                                                   \
        "sxtb16  r9, lr, ror #8\n"                                                                           \
        "sxtb16  r10, r12\n"                                                                                 \
        "sxtb16  r11, r12, ror #8\n"
#define GEMM_GROUP_BYTES "4"
__attribute__((naked)) static void gemm_pairs(gemm_job_t *job __attribute__((unused))) {
    __asm__ volatile(GEMM_PAIRS_ASM);
}
#undef GEMM_LOAD_WEIGHTS
#undef GEMM_GROUP_BYTES

/* Weights widened by the compiler (p->weights16: per pair, per group the two channels' SXTB16 words, as
 * conv_2d_wide.c's): one LDM instead of two loads and four SXTB16; w advances 16 bytes per group, k4 is
 * the pair's bytes, w_step 0. */
#define GEMM_LOAD_WEIGHTS "ldmia   r1!, {r8-r11}\n"
#define GEMM_GROUP_BYTES "16"
__attribute__((naked)) static void gemm_pairs16(gemm_job_t *job __attribute__((unused))) {
    __asm__ volatile(GEMM_PAIRS_ASM);
}
#undef GEMM_LOAD_WEIGHTS
#undef GEMM_GROUP_BYTES

/* The K % 4 last taps of channels [oc0, oc0 + 2 * pairs), added to the chunk's sums. */
static void add_tail(const gemm_ctx_t *g, const int16_t *buf, int oc0, int pairs, int32_t *acc) {
    const int16_t *t = buf + 2 * g->k4;
    for (int j = 0; j < pairs; ++j) {
        const int oc = oc0 + 2 * j, two = oc + 1 < g->out_c;
        const int8_t *w0 = g->filter + oc * g->k + g->k4, *w1 = two ? w0 + g->k : w0;
        for (int i = 0; i < g->k - g->k4; ++i) {
            const int slot = g->padded ? (((i & 1) << 1) | ((i >> 1) & 1)) : i; /* padded: SXTB16 order */
            const int32_t x0 = t[slot], x1 = t[4 + slot];
            acc[4 * j] += x0 * w0[i], acc[4 * j + 1] += x0 * w1[i];
            acc[4 * j + 2] += x1 * w0[i], acc[4 * j + 3] += x1 * w1[i];
        }
    }
}

/*
 * Output channels [oc0 + j0, oc0 + j1) of both pixels from a chunk's sums (acc[4 * (j / 2) + j % 2]
 * pixel 0, + 2 pixel 1, as gemm_pairs stores them).  out1 may be out0 (a lone last pixel: same values).
 */
static void requantize_range(const gemm_ctx_t *g, const int32_t *acc, int oc0, int j0, int j1, int8_t *out0,
                             int8_t *out1) {
    const int32_t *mult = g->p->out_multiplier + oc0, *shift = g->p->out_shift + oc0;
    const int32_t out_offset = g->out_offset, lo = g->act_min, hi = g->act_max;
    out0 += oc0, out1 += oc0;
    for (int j = j0; j < j1; ++j) {
        const int32_t m = mult[j], sh = shift[j];
        const int32_t *a = acc + 4 * (j >> 1) + (j & 1);
        int32_t v0 = a[0], v1 = a[2];
        if (sh < 0) {
            const int32_t right_m1 = -sh - 1, half = (int32_t)(1u << right_m1);
            v0 = tm_dsp_requantize_right(v0, m, half, right_m1);
            v1 = tm_dsp_requantize_right(v1, m, half, right_m1);
        } else {
            v0 = tm_dsp_requantize(v0, m, sh);
            v1 = tm_dsp_requantize(v1, m, sh);
        }
        out0[j] = (int8_t)tm_clamp_i32(v0 + out_offset, lo, hi);
        out1[j] = (int8_t)tm_clamp_i32(v1 + out_offset, lo, hi);
    }
}

/* Work of requantize_pairs (read by the assembly: keep the field offsets). */
typedef struct {
    const int32_t *acc;   /* +0  sums as gemm_pairs stores them */
    const int32_t *table; /* +4  per channel: multiplier, right shift - 1, 2^(right shift - 1) */
    int8_t *out0, *out1;  /* +8 +12 outputs of the chunk's first channel */
    int32_t pairs;        /* +16 channel pairs (>= 1) */
    int32_t out_offset, act_min, act_max; /* +20 +24 +28 */
} rq_job_t;

#define RQ_ONE(SRC, DST)                    \
    "ldr     r11, [r0, #" SRC "]\n"         \
    "mov.w   r12, #0x40000000\n"            \
    "mov.w   lr, #0\n"                      \
    "smlal   r12, lr, r11, r8\n"            \
    "add     r11, r10, lr, asr #31\n"       \
    "adds    r12, r12, r11, lsl #31\n"      \
    "adc     lr, lr, r11, asr #1\n"         \
    "asr     lr, lr, r9\n"                  \
    "add     lr, lr, r5\n"                  \
    "cmp     lr, r6\n"                      \
    "it      lt\n"                          \
    "movlt   lr, r6\n"                      \
    "cmp     lr, r7\n"                      \
    "it      gt\n"                          \
    "movgt   lr, r7\n"                      \
    "strb    lr, [" DST "], #1\n"

/*
 * Both pixels' outputs of `pairs` channel pairs, for ops whose shifts are all right shifts: the
 * requantization of tm_dsp_requantize_right, + output offset, clamp, 16 instructions per output
 * (gcc: about 30, short of registers).
 */
__attribute__((naked)) static void requantize_pairs(const rq_job_t *job __attribute__((unused))) {
    __asm__ volatile(
        "push    {r4-r11, lr}\n"
        "ldr     r1, [r0, #4]\n"
        "ldr     r2, [r0, #8]\n"
        "ldr     r3, [r0, #12]\n"
        "ldr     r4, [r0, #16]\n"
        "ldr     r5, [r0, #20]\n"
        "ldr     r6, [r0, #24]\n"
        "ldr     r7, [r0, #28]\n"
        "ldr     r0, [r0, #0]\n"
        "1:\n"
        "ldm     r1!, {r8-r10}\n"
        RQ_ONE("0", "r2")
        RQ_ONE("8", "r3")
        "ldm     r1!, {r8-r10}\n"
        RQ_ONE("4", "r2")
        RQ_ONE("12", "r3")
        "add     r0, r0, #16\n"
        "subs    r4, r4, #1\n"
        "bne     1b\n"
        "pop     {r4-r11, pc}\n");
}

/*
 * The same for ops whose activation range is the whole int8 range (act_min -128, act_max 127): the output
 * offset rides in the rounding constant (table word 3 = 2^(right - 1) + offset * 2^right, see
 * build_rq_table) and SSAT is the clamp, 10 instructions per output.
 */
#define RQ_SAT(SRC, DST)                    \
    "ldr     r11, [r0, #" SRC "]\n"         \
    "mov.w   r12, #0x40000000\n"            \
    "mov.w   lr, #0\n"                      \
    "smlal   r12, lr, r11, r8\n"            \
    "add     r11, r10, lr, asr #31\n"       \
    "adds    r12, r12, r11, lsl #31\n"      \
    "adc     lr, lr, r11, asr #1\n"         \
    "asr     lr, lr, r9\n"                  \
    "ssat    lr, #8, lr\n"                  \
    "strb    lr, [" DST "], #1\n"

__attribute__((naked)) static void requantize_pairs_sat(const rq_job_t *job __attribute__((unused))) {
    __asm__ volatile(
        "push    {r4-r11, lr}\n"
        "ldr     r1, [r0, #4]\n"
        "ldr     r2, [r0, #8]\n"
        "ldr     r3, [r0, #12]\n"
        "ldr     r4, [r0, #16]\n"
        "ldr     r0, [r0, #0]\n"
        "1:\n"
        "ldm     r1!, {r8-r10}\n"
        RQ_SAT("0", "r2")
        RQ_SAT("8", "r3")
        "ldm     r1!, {r8-r10}\n"
        RQ_SAT("4", "r2")
        RQ_SAT("12", "r3")
        "add     r0, r0, #16\n"
        "subs    r4, r4, #1\n"
        "bne     1b\n"
        "pop     {r4-r11, pc}\n");
}

/*
 * The table of requantize_pairs, if every shift is a right shift and out_c fits; else 0.  Returns 2 (the
 * table of requantize_pairs_sat) when the activation range is all of int8 and every offset * 2^right is
 * below 2^27 in magnitude: hi + (c >> 1) in the requantization then cannot overflow (|hi| <= 2^30), and
 * adding offset * 2^(31 + right) to the 64-bit sum adds exactly offset to its floor quotient.
 */
int tm_dsp_rq_table(const int32_t *multiplier, const int32_t *shift, int n, int32_t out_offset, int32_t act_min,
                    int32_t act_max, int32_t *table) {
    int sat = act_min == -128 && act_max == 127;
    for (int oc = 0; oc < n; ++oc) {
        if (shift[oc] >= 0) {
            return 0;
        }
        const int32_t right = -shift[oc];
        const int64_t folded = (int64_t)out_offset * ((int64_t)1 << right);
        sat = sat && right <= 24 && folded > -(1LL << 27) && folded < (1LL << 27);
    }
    for (int oc = 0; oc < n; ++oc) {
        const int32_t right = -shift[oc];
        table[3 * oc] = multiplier[oc];
        table[3 * oc + 1] = right - 1;
        table[3 * oc + 2] = (int32_t)(1u << (right - 1)) + (sat ? (int32_t)((uint32_t)out_offset << right) : 0);
    }
    return sat ? 2 : 1;
}

static int build_rq_table(const tm_conv_params_t *p, int out_c, int32_t *table) {
    if (out_c > RQ_TABLE_CHANNELS) {
        return 0;
    }
    return tm_dsp_rq_table(p->out_multiplier, p->out_shift, out_c, p->output_offset, p->act_min, p->act_max, table);
}

static const int32_t no_bias[2] = {0, 0};

/*
 * The sums of channel pairs [pair0, pair0 + pairs) of both pixels into acc (gemm_pairs' order), starting
 * from `bias` (int32 per channel, or 0).  Padded columns (g->padded): every pair but the last of the filter
 * runs over the padded groups, reading its 4 weights past k (within the filter, times zero inputs); the
 * last pair, and a lone channel, take the exact k4 groups and the tail.  Otherwise the k4 groups, and the
 * tail of every pair in natural order (int16x8 columns filled tap by tap).
 */
static inline __attribute__((always_inline)) void chunk_sums_inline(const gemm_ctx_t *g, const int16_t *buf,
                                                                   const int32_t *bias, int pair0, int pairs,
                                                                   int32_t *acc) {
    if (g->w16) { /* no lone channel, no tail */
        gemm_job_t job = {buf, (const int8_t *)(const void *)(g->w16 + 2 * pair0 * g->k), 0, 4 * g->k, 0, pairs, acc,
                          bias ? bias + 2 * pair0 : no_bias, bias ? 4 : 0, bias ? 8 : 0};
        gemm_pairs16(&job);
        return;
    }
    const int all_pairs = (g->out_c + 1) / 2;
    const int oc0 = 2 * pair0, lone = oc0 + 2 * pairs > g->out_c; /* the last pair is one channel */
    const int last_here = pair0 + pairs == all_pairs, exact = g->padded ? last_here : lone;
    const int k4_fast = g->padded ? g->k4 + 4 : g->k4;
    gemm_job_t job = {buf, g->filter + oc0 * g->k, g->k, k4_fast, 2 * g->k - k4_fast, pairs - exact, acc,
                      bias ? bias + oc0 : no_bias, bias ? 4 : 0, bias ? 8 : 0};
    if (job.pairs > 0) {
        gemm_pairs(&job);
    }
    if (exact) {
        job.w = g->filter + (oc0 + 2 * (pairs - 1)) * g->k, job.dw = lone ? 0 : g->k, job.k4 = g->k4;
        job.pairs = 1, job.bias_d1 = lone ? 0 : job.bias_d1;
        gemm_pairs(&job);
    }
    if (g->k != g->k4) {
        const int first = g->padded ? pairs - 1 : 0; /* padded: only the exact pair has a tail apart */
        add_tail(g, buf, oc0 + 2 * first, pairs - first, acc + 4 * first);
    }
}

/* The same as a call, for int16x8 (inlined there it costs 45,000 instructions per CIFAR ResNet inference in
 * spills); int8's pixels_pair inlines it, its code as before the int16x8 paths shared it. */
__attribute__((noinline)) static void chunk_sums(const gemm_ctx_t *g, const int16_t *buf, const int32_t *bias,
                                                 int pair0, int pairs, int32_t *acc) {
    chunk_sums_inline(g, buf, bias, pair0, pairs, acc);
}

/* All output channels of pixels out0 (and out1 when non-NULL) from the filled buffer. */
static void pixels_pair(const gemm_ctx_t *g, const int16_t *buf, int8_t *out0, int8_t *out1) {
    int32_t acc[4 * GEMM_CHUNK_PAIRS];
    const int all_pairs = (g->out_c + 1) / 2;
    out1 = out1 ? out1 : out0;
    for (int pair0 = 0; pair0 < all_pairs; pair0 += GEMM_CHUNK_PAIRS) {
        const int pairs = all_pairs - pair0 < GEMM_CHUNK_PAIRS ? all_pairs - pair0 : GEMM_CHUNK_PAIRS;
        const int oc0 = 2 * pair0, lone = oc0 + 2 * pairs > g->out_c;
        chunk_sums_inline(g, buf, g->bias, pair0, pairs, acc);
        const int n = 2 * pairs - lone, full = n / 2;
        int j0 = 0;
        if (g->rq_table && full > 0) {
            const rq_job_t rq = {acc, g->rq_table + 3 * oc0, out0 + oc0, out1 + oc0, full, g->out_offset,
                                 g->act_min, g->act_max};
            (g->rq_sat ? requantize_pairs_sat : requantize_pairs)(&rq);
            j0 = 2 * full;
        }
        requantize_range(g, acc, oc0, j0, n, out0, out1);
    }
}

/* int16x8: n taps (a multiple of 4) at src into the slots of pixel `col` from group g, in SXTB16 order
 * ((x0, x2), (x1, x3): PKHBT and PKHTB of two loads). */
static void permute_s16(int16_t *buf, const int16_t *src, int n, int g, int col) {
    uint32_t *dst = (uint32_t *)(void *)buf + 4 * g + 2 * col;
    for (int i = 0; i < n; i += 4, dst += 4) {
        const uint32_t a = tm_ld32(src + i), b = tm_ld32(src + i + 2); /* (x0, x1), (x2, x3) */
        uint32_t lo, hi;
        __asm__("pkhbt %0, %2, %3, lsl #16\n\t"
                "pkhtb %1, %3, %2, asr #16"
                : "=&r"(lo), "=r"(hi)
                : "r"(a), "r"(b));
        dst[0] = lo, dst[1] = hi;
    }
}

/* `groups` groups of 4 taps from src into a column in natural order (s16_natural: each group's two words as
 * they are), two groups per step so that the four loads pipeline; returns the next group's slots. */
static inline __attribute__((always_inline)) uint32_t *copy_s16(uint32_t *dst, const int16_t *src, int groups) {
    for (; groups >= 2; groups -= 2, src += 8, dst += 8) {
        const uint32_t a = tm_ld32(src), b = tm_ld32(src + 2), c = tm_ld32(src + 4), d = tm_ld32(src + 6);
        dst[0] = a, dst[1] = b, dst[4] = c, dst[5] = d;
    }
    if (groups) {
        dst[0] = tm_ld32(src), dst[1] = tm_ld32(src + 2);
        dst += 4;
    }
    return dst;
}

static inline uint32_t *zero_groups_s16(uint32_t *dst, int groups) {
    for (; groups > 0; --groups, dst += 4) {
        dst[0] = 0, dst[1] = 0;
    }
    return dst;
}

static void group_s16(const gemm_ctx_t *g, int16_t *buf, const int16_t *src, int n, int grp, int col) {
    if (g->natural) {
        copy_s16((uint32_t *)(void *)buf + 4 * grp + 2 * col, src, n >> 2);
    } else {
        permute_s16(buf, src, n, grp, col);
    }
}

/* fill_column_s16 for in_c % 4 == 0 and natural columns: row runs or pixels copied, the rest zeros. */
static void fill_natural_s16(const gemm_ctx_t *g, int16_t *buf, int y0, int x0, int col) {
    const tm_conv_params_t *p = g->p;
    const int whole_rows = p->dilation_w == 1 && x0 >= 0 && x0 + g->f_w <= g->in_w;
    const int row_groups = (g->f_w * g->in_c) >> 2, pixel_groups = g->in_c >> 2;
    uint32_t *dst = (uint32_t *)(void *)buf + 2 * col;
    for (int fy = 0; fy < g->f_h; ++fy) {
        const int y = y0 + fy * p->dilation_h;
        if (y < 0 || y >= g->in_h) {
            dst = zero_groups_s16(dst, row_groups);
            continue;
        }
        const int16_t *row = g->input16 + y * g->in_w * g->in_c;
        if (whole_rows) { /* the filter row's taps are one run of f_w * in_c values */
            dst = copy_s16(dst, row + x0 * g->in_c, row_groups);
            continue;
        }
        for (int fx = 0; fx < g->f_w; ++fx) {
            const int x = x0 + fx * p->dilation_w;
            dst = x >= 0 && x < g->in_w ? copy_s16(dst, row + x * g->in_c, pixel_groups)
                                        : zero_groups_s16(dst, pixel_groups);
        }
    }
}

/* int16x8, in_c not a multiple of 4 and at most S16_STAGE_TAPS taps: the taps in natural order first
 * (out-of-image taps 0, which is what skipping them adds: the input offset is 0), padded with zeros to
 * whole groups, then permuted; the K % 4 last taps are thus in SXTB16 order too (g->padded). */
__attribute__((noinline)) static void fill_column_s16_staged(const gemm_ctx_t *g, int16_t *buf, int y0, int x0,
                                                             int col) {
    const tm_conv_params_t *p = g->p;
    int16_t stage[S16_STAGE_TAPS + 4] __attribute__((aligned(4)));
    const int run = g->f_w * g->in_c; /* taps of one filter row */
    const int whole_rows = p->dilation_w == 1 && x0 >= 0 && x0 + g->f_w <= g->in_w;
    int16_t *d = stage;
    for (int fy = 0; fy < g->f_h; ++fy, d += run) {
        const int y = y0 + fy * p->dilation_h;
        if (y < 0 || y >= g->in_h) {
            memset(d, 0, (size_t)run * sizeof(int16_t));
            continue;
        }
        const int16_t *row = g->input16 + y * g->in_w * g->in_c;
        if (whole_rows) {
            memcpy(d, row + x0 * g->in_c, (size_t)run * sizeof(int16_t));
            continue;
        }
        for (int fx = 0; fx < g->f_w; ++fx) {
            const int x = x0 + fx * p->dilation_w;
            if (x >= 0 && x < g->in_w) {
                memcpy(d + fx * g->in_c, row + x * g->in_c, (size_t)g->in_c * sizeof(int16_t));
            } else {
                memset(d + fx * g->in_c, 0, (size_t)g->in_c * sizeof(int16_t));
            }
        }
    }
    for (int i = g->k; i < g->k4 + 4; ++i) {
        stage[i] = 0;
    }
    group_s16(g, buf, stage, g->padded ? g->k4 + 4 : g->k4, 0, col);
    if (!g->padded) {
        for (int i = g->k4; i < g->k; ++i) {
            buf[slot_of(g, i, col)] = stage[i]; /* the tail in natural order, as add_tail reads it */
        }
    }
}

/* int16x8 (input offset 0): the taps of output pixel `pix` into column `col`. */
static void fill_column_s16(const gemm_ctx_t *g, int16_t *buf, int pix, int col) {
    const tm_conv_params_t *p = g->p;
    const int oy = pix / g->out_w, ox = pix - oy * g->out_w;
    const int y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    if (g->in_c & 3) {
        if (g->k4 + 4 <= S16_STAGE_TAPS) {
            fill_column_s16_staged(g, buf, y0, x0, col);
            return;
        }
        int k = 0; /* tap by tap (more than S16_STAGE_TAPS taps over an odd depth: rare) */
        for (int fy = 0; fy < g->f_h; ++fy) {
            const int y = y0 + fy * p->dilation_h;
            for (int fx = 0; fx < g->f_w; ++fx) {
                const int x = x0 + fx * p->dilation_w;
                const int in = y >= 0 && y < g->in_h && x >= 0 && x < g->in_w;
                const int16_t *src = in ? g->input16 + (y * g->in_w + x) * g->in_c : 0;
                for (int i = 0; i < g->in_c; ++i, ++k) {
                    buf[slot_of(g, k, col)] = src ? src[i] : 0;
                }
            }
        }
        return;
    }
    if (g->natural) {
        fill_natural_s16(g, buf, y0, x0, col);
        return;
    }
    const int whole_rows = p->dilation_w == 1 && x0 >= 0 && x0 + g->f_w <= g->in_w;
    const int run = g->f_w * g->in_c;
    int grp = 0;
    for (int fy = 0; fy < g->f_h; ++fy) {
        const int y = y0 + fy * p->dilation_h;
        const int row_ok = y >= 0 && y < g->in_h;
        if (row_ok && whole_rows) { /* the filter row's taps are one run of f_w * in_c values */
            group_s16(g, buf, g->input16 + (y * g->in_w + x0) * g->in_c, run, grp, col);
            grp += run >> 2;
            continue;
        }
        for (int fx = 0; fx < g->f_w; ++fx, grp += g->in_c >> 2) {
            const int x = x0 + fx * p->dilation_w;
            if (row_ok && x >= 0 && x < g->in_w) {
                group_s16(g, buf, g->input16 + (y * g->in_w + x) * g->in_c, g->in_c, grp, col);
            } else {
                zero_groups_s16((uint32_t *)(void *)buf + 4 * grp + 2 * col, g->in_c >> 2);
            }
        }
    }
}

/* int16x8: taps per part (the int32 sums of a part are exact: see TM_DSP_S16_EXACT_TAPS; parts add up
 * in int64). */
#define S16_PART_TAPS 508

/* Raw sums (no bias) of the chunk's channel pairs over all taps, in int64. */
static void sums_s16(const gemm_ctx_t *g, const int16_t *buf, int oc0, int pairs, int64_t *sum) {
    int32_t acc[4 * S16_CHUNK_PAIRS];
    const int lone = oc0 + 2 * pairs > g->out_c;
    for (int i = 0; i < 4 * pairs; ++i) {
        sum[i] = 0;
    }
    for (int t0 = 0; t0 == 0 || t0 < g->k4; t0 += S16_PART_TAPS) {
        const int part = g->k4 - t0 < S16_PART_TAPS ? g->k4 - t0 : S16_PART_TAPS;
        gemm_job_t job = {buf + 2 * t0, g->filter + oc0 * g->k + t0, g->k, part, 2 * g->k - part, pairs - lone,
                          acc, no_bias, 0, 0};
        if (job.pairs > 0) {
            gemm_pairs(&job);
        }
        if (lone) {
            job.w = g->filter + (g->out_c - 1) * g->k + t0, job.dw = 0, job.pairs = 1;
            gemm_pairs(&job);
        }
        for (int i = 0; i < 4 * pairs; ++i) {
            sum[i] += acc[i];
        }
    }
    if (g->k != g->k4) {
        for (int i = 0; i < 4 * pairs; ++i) {
            acc[i] = 0;
        }
        add_tail(g, buf, oc0, pairs, acc);
        for (int i = 0; i < 4 * pairs; ++i) {
            sum[i] += acc[i];
        }
    }
}

/* int16x8, any channel (the int64 route): all output channels of pixels out0 and out1 (may be out0). */
static void pixels_pair_s16_long(const gemm_ctx_t *g, const int16_t *buf, int16_t *out0, int16_t *out1) {
    const tm_conv_params_t *p = g->p;
    int64_t sum[4 * S16_CHUNK_PAIRS];
    const int all_pairs = (g->out_c + 1) / 2;
    for (int pair0 = 0; pair0 < all_pairs; pair0 += S16_CHUNK_PAIRS) {
        const int pairs = all_pairs - pair0 < S16_CHUNK_PAIRS ? all_pairs - pair0 : S16_CHUNK_PAIRS;
        const int oc0 = 2 * pair0, n = g->out_c - oc0 < 2 * pairs ? g->out_c - oc0 : 2 * pairs;
        sums_s16(g, buf, oc0, pairs, sum);
        for (int j = 0; j < n; ++j) {
            const int oc = oc0 + j;
            const int64_t *a = sum + 4 * (j >> 1) + (j & 1);
            for (int px = 0; px < 2; ++px) { /* tm_requantize_s16 adds the bias */
                const int32_t v = tm_requantize_s16(a[2 * px], g->bias_any, p->acc64, oc, p->out_multiplier[oc],
                                                    p->out_shift[oc]);
                (px ? out1 : out0)[oc] = (int16_t)tm_clamp_i32(v, g->act_min, g->act_max);
            }
        }
    }
}


/* Sum of |w| over n int8 weights: by words, USADA8 of w + 128 against 128. */
static int32_t abs_sum_s8(const int8_t *w, int n) {
    uint32_t sum = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        sum = __usada8(tm_ld32(w + i) ^ 0x80808080u, 0x80808080u, sum);
    }
    for (; i < n; ++i) {
        sum += (uint32_t)(w[i] < 0 ? -w[i] : w[i]);
    }
    return (int32_t)sum;
}

/*
 * Whether every channel of an int16x8 op can take the int32 route (pixels_pair_s16, conv_s16_wide): with an
 * int32 bias always (the int32 sums wrap as TFLite's 32-bit accumulator does); with an int64 bias when out_c
 * fits S16_TABLE_CHANNELS, every sum plus the bias fits int32 (|bias| + 32768 * sum |w| < 2^31: then the
 * one-part int32 sums are exact and so is the 64-bit accumulator's value) and the total shift 15 - shift
 * is 1..31.
 */
static int s16_fits_int32(const gemm_ctx_t *g) {
    const tm_conv_params_t *p = g->p;
    if (!p->acc64) {
        return 1;
    }
    if (g->out_c > S16_TABLE_CHANNELS) {
        return 0;
    }
    return tm_dsp_s16_channels_fit(p, g->filter, g->k, (const int64_t *)g->bias_any, g->out_c, 1, 31);
}

int tm_dsp_s16_channels_fit(const tm_conv_params_t *p, const int8_t *filter, int k, const int64_t *bias, int out_c,
                            int right_min, int right_max) {
    if (p->acc32_fits) { /* the compiler's answer for the sums: only the shifts are left to check */
        for (int oc = 0; oc < out_c; ++oc) {
            const int32_t right = 15 - p->out_shift[oc];
            if (right < right_min || right > right_max) {
                return 0;
            }
        }
        return p->acc32_fits == 1;
    }
    for (int oc = 0; oc < out_c; ++oc) {
        const int64_t b = bias ? bias[oc] : 0;
        const int32_t right = 15 - p->out_shift[oc];
        if (right < right_min || right > right_max || p->out_multiplier[oc] < 0) {
            return 0;
        }
        if ((b < 0 ? -b : b) + (int64_t)abs_sum_s8(filter + oc * k, k) * 32768 > INT32_MAX) {
            return 0;
        }
    }
    return 1;
}

/* The requantization table of an op that fits (dsp_conv.h). */
int tm_dsp_s16_table(const tm_conv_params_t *p, const int64_t *bias, int oc0, int n, int32_t *table) {
    int all_mulh = 1;
    for (int oc = oc0; oc < oc0 + n; ++oc) {
        all_mulh &= 15 - p->out_shift[oc] >= 16;
    }
    for (int j = 0; j < n; ++j) {
        const int oc = oc0 + j;
        const int32_t m = p->out_multiplier[oc], right = 15 - p->out_shift[oc];
        const int32_t reduced = m < 0x7FFF0000 ? (m + (1 << 15)) >> 16 : 0x7FFF;
        int32_t *t = table + 4 * j;
        t[0] = bias ? (int32_t)bias[oc] : 0;
        if (all_mulh) {
            t[1] = (int32_t)((uint32_t)reduced << (32 - right)), t[2] = 0, t[3] = 0;
        } else {
            t[1] = reduced, t[2] = (int32_t)(1u << (right - 1)), t[3] = right;
        }
    }
    return all_mulh;
}

/* store_s16 for one form of the table and one clamp (constants: the compiler makes one loop of each), a pair of
 * channels at a time: their 4 sums, two table entries, a word stored per pixel. */
static inline __attribute__((always_inline)) void store_s16_as(const int32_t *acc, const int32_t *table, int n,
                                                               int32_t lo, int32_t hi, int16_t *out0,
                                                               int16_t *out1, int mulh, int kind) {
    int j = 0;
    for (; j + 1 < n; j += 2, acc += 4, table += 8) {
        const int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
        const int32_t v00 = tm_clamp_s16(tm_requantize_s16_at(a0, table, mulh), kind, lo, hi);
        const int32_t v01 = tm_clamp_s16(tm_requantize_s16_at(a1, table + 4, mulh), kind, lo, hi);
        const int32_t v10 = tm_clamp_s16(tm_requantize_s16_at(a2, table, mulh), kind, lo, hi);
        const int32_t v11 = tm_clamp_s16(tm_requantize_s16_at(a3, table + 4, mulh), kind, lo, hi);
        tm_st32(out0 + j, tm_pack_s16(v00, v01));
        tm_st32(out1 + j, tm_pack_s16(v10, v11));
    }
    if (j < n) { /* an odd channel count: the last channel alone */
        out0[j] = (int16_t)tm_clamp_s16(tm_requantize_s16_at(acc[0], table, mulh), kind, lo, hi);
        out1[j] = (int16_t)tm_clamp_s16(tm_requantize_s16_at(acc[2], table, mulh), kind, lo, hi);
    }
}

/*
 * Outputs [0, n) of two pixels (out1 may be out0) from their int32 sums in gemm_pairs' order (acc[4 * (j / 2) +
 * j % 2] pixel 0, + 2 pixel 1) and tm_dsp_s16_table's table (all_mulh: its return): requantized and clamped.
 */
static void store_s16(const int32_t *acc, const int32_t *table, int all_mulh, int n, int32_t lo, int32_t hi,
                      int16_t *out0, int16_t *out1) {
    const int kind = tm_s16_clamp_kind(lo, hi);
    if (!all_mulh) {
        store_s16_as(acc, table, n, lo, hi, out0, out1, 0, TM_S16_CLAMP_RANGE);
    } else if (kind == TM_S16_CLAMP_NONE) {
        store_s16_as(acc, table, n, lo, hi, out0, out1, 1, TM_S16_CLAMP_NONE);
    } else if (kind == TM_S16_CLAMP_RELU) {
        store_s16_as(acc, table, n, lo, hi, out0, out1, 1, TM_S16_CLAMP_RELU);
    } else {
        store_s16_as(acc, table, n, lo, hi, out0, out1, 1, TM_S16_CLAMP_RANGE);
    }
}

/* int16x8, every channel as s16_fits_int32 allows: all output channels of pixels out0 and out1 (may be
 * out0), int32 sums over all taps in one part, then TFLite's requantization for the bias type (`table`:
 * s16_fits_int32's, for an int64 bias). */
static void pixels_pair_s16(const gemm_ctx_t *g, const int32_t *table, int all_mulh, const int16_t *buf,
                            int16_t *out0, int16_t *out1) {
    const tm_conv_params_t *p = g->p;
    int32_t acc[4 * S16_CHUNK_PAIRS];
    const int all_pairs = (g->out_c + 1) / 2;
    const int32_t lo = g->act_min, hi = g->act_max;
    for (int pair0 = 0; pair0 < all_pairs; pair0 += S16_CHUNK_PAIRS) {
        const int pairs = all_pairs - pair0 < S16_CHUNK_PAIRS ? all_pairs - pair0 : S16_CHUNK_PAIRS;
        const int oc0 = 2 * pair0, n = g->out_c - oc0 < 2 * pairs ? g->out_c - oc0 : 2 * pairs;
        chunk_sums(g, buf, p->acc64 ? 0 : (const int32_t *)g->bias_any, pair0, pairs, acc);
        if (p->acc64) {
            store_s16(acc, table + 4 * oc0, all_mulh, n, lo, hi, out0 + oc0, out1 + oc0);
            continue;
        }
        for (int j = 0; j < n; ++j) {
            const int oc = oc0 + j;
            const int32_t *a = acc + 4 * (j >> 1) + (j & 1);
            const int32_t v0 = tm_dsp_requantize(a[0], p->out_multiplier[oc], p->out_shift[oc]);
            const int32_t v1 = tm_dsp_requantize(a[2], p->out_multiplier[oc], p->out_shift[oc]);
            out0[oc] = (int16_t)tm_clamp_i32(v0, lo, hi);
            out1[oc] = (int16_t)tm_clamp_i32(v1, lo, hi);
        }
    }
}

/* Work of wide_sums_s16 (read by the assembly: keep the field offsets). */
typedef struct {
    const int16_t *buf;  /* +0  the two pixels' taps (gemm's column layout) */
    const int32_t *w;    /* +4  the chunk's widened weights (per pair, per group: ch0 lo, hi, ch1 lo, hi) */
    int32_t *acc;        /* +8  the 4 sums of each pair go here, in gemm_pairs' order */
    int32_t *acc_end;    /* +12 acc + 4 * pairs */
    int32_t groups;      /* +16 groups of 4 taps (1 .. S16_WIDE_GROUPS) */
} s16_wide_job_t;

#define S16_STR(x) #x
#define S16_XSTR(x) S16_STR(x)

/*
 * The int8 wide path's loop (conv_2d_wide.c, TM_DSP_WIDE_GROUP_ASM) over int16 taps, the raw sums stored
 * instead of requantized: 10 instructions per 16 MACs where gemm_pairs, which widens the weights as it goes,
 * takes 16.  Fully unrolled, the call jumps into the run of S16_WIDE_GROUPS groups at the op's group count.
 * Stack: [sp] buf, +4 acc, +8 acc_end, +12 entry.
 */
__attribute__((naked)) static void wide_sums_s16(const s16_wide_job_t *job __attribute__((unused))) {
    __asm__ volatile(
        "push    {r4-r11, lr}\n"
        "sub     sp, sp, #16\n"
        "ldm     r0, {r1-r5}\n"
        "adr.w   r8, 8f\n" /* the run's end, 9f, is beyond ADR's reach */
        "add.w   r8, r8, #" S16_XSTR(S16_WIDE_GROUPS) " * 40\n"
        "sub     r8, r8, r5, lsl #5\n"
        "sub     r8, r8, r5, lsl #3\n" /* TM_DSP_WIDE_GROUP_BYTES per group */
        "orr     r8, r8, #1\n"
        "stm     sp, {r1, r3, r4, r8}\n"
        "mov     r0, r1\n"
        "mov     r1, r2\n"
        "1:\n"
        "movs    r3, #0\n"
        "movs    r4, #0\n"
        "movs    r5, #0\n"
        "movs    r6, #0\n"
        "ldr     pc, [sp, #12]\n"
        "8:\n"
        ".rept " S16_XSTR(S16_WIDE_GROUPS) "\n"
        TM_DSP_WIDE_GROUP_ASM
        ".endr\n"
        "9:\n"
        "ldr     r2, [sp, #4]\n"
        "stm     r2!, {r3, r4, r5, r6}\n"
        "str     r2, [sp, #4]\n"
        "ldr     r7, [sp, #8]\n"
        "ldr     r0, [sp]\n"
        "cmp     r2, r7\n"
        "bne     1b\n"
        "add     sp, sp, #16\n"
        "pop     {r4-r11, pc}\n");
}

/* Widened weights of channels [oc0, oc0 + n) (n even; channel out_c, past the last, has zero weights), per
 * pair and group in natural order (s16_natural): ch0 (w0, w1), (w2, w3), ch1 the same; the K % 4 last taps
 * padded with zero weights. */
static void widen_weights_s16(const gemm_ctx_t *g, int oc0, int n, int32_t *w) {
    const int full = g->k >> 2, groups = (g->k + 3) >> 2;
    for (int j = 0; j < n; j += 2) {
        const int8_t *f[2] = {g->filter + (oc0 + j) * g->k, g->filter + (oc0 + j + 1) * g->k};
        const int two = oc0 + j + 1 < g->out_c;
        for (int q = 0; q < groups; ++q, w += 4) {
            for (int c = 0; c < 2; ++c) {
                uint32_t x = 0;
                if (c == 0 || two) {
                    if (q < full) {
                        x = tm_ld32(f[c] + 4 * q);
                    } else {
                        int8_t t[4] = {0, 0, 0, 0};
                        for (int i = 4 * q; i < g->k; ++i) {
                            t[i - 4 * q] = f[c][i];
                        }
                        x = tm_ld32(t);
                    }
                }
                const int32_t lo = __sxtb16(x), hi = tm_sxtb16_ror8(x); /* (x0, x2), (x1, x3) */
                int32_t w01, w23;
                __asm__("pkhbt %0, %2, %3, lsl #16\n\t"
                        "pkhtb %1, %3, %2, asr #16"
                        : "=&r"(w01), "=r"(w23)
                        : "r"(lo), "r"(hi));
                w[2 * c] = w01, w[2 * c + 1] = w23;
            }
        }
    }
}

/*
 * int16x8 over weights widened once per chunk of channels (the chunks: s16_wide_plan): for each chunk, each pair
 * of output pixels is filled into the columns (again per chunk) and wide_sums_s16 gives all the chunk's sums,
 * requantized as pixels_pair_s16 does.  Needs what pixels_pair_s16 needs, an int64 bias (its table) and
 * staged (padded) columns when K % 4 != 0.
 */
/* The compiler's widened weights where this file's layouts can take them (undoubled, even channels), or 0:
 * the words widen_weights_s16 makes and gemm_pairs16 reads, for all channels (host/compiler/ops/conv.py,
 * wide_weights). */
static const int32_t *pre_widened(const gemm_ctx_t *g) {
    const tm_conv_params_t *p = g->p;
    return p->weights16 && !p->weights16_doubled && !(g->out_c & 1) ? (const int32_t *)(const void *)p->weights16 : 0;
}

static void conv_s16_wide(const gemm_ctx_t *g, int16_t *output, int pixels, int chunk) {
    int32_t w[S16_WIDE_WEIGHT_BYTES / 4] __attribute__((aligned(8)));
    const int32_t *pre = pre_widened(g);
    int16_t buf[8 * S16_WIDE_GROUPS] __attribute__((aligned(8))); /* the two pixels' columns */
    int32_t acc[4 * S16_CHUNK_PAIRS];
    int32_t table[4 * 2 * S16_CHUNK_PAIRS];
    const int32_t lo = g->act_min, hi = g->act_max, groups = (g->k + 3) >> 2;
    for (int oc0 = 0; oc0 < g->out_c; oc0 += chunk) {
        const int n = g->out_c - oc0 < chunk ? g->out_c - oc0 : chunk; /* channels kept */
        const int pairs = (n + 1) >> 1;
        const int32_t *wk = pre ? pre + (oc0 >> 1) * 4 * groups : w; /* 4 words per pair and group */
        if (!pre) {
            widen_weights_s16(g, oc0, 2 * pairs, w);
        }
        const int all_mulh = tm_dsp_s16_table(g->p, (const int64_t *)g->bias_any, oc0, n, table);
        for (int pix = 0; pix < pixels; pix += 2) {
            const int two = pix + 1 < pixels;
            int16_t *o0 = output + pix * g->out_c + oc0, *o1 = output + (two ? pix + 1 : pix) * g->out_c + oc0;
            fill_column_s16(g, buf, pix, 0);
            fill_column_s16(g, buf, two ? pix + 1 : pix, 1); /* padded: the K % 4 last taps are a whole group */
            const s16_wide_job_t job = {buf, wk, acc, acc + 4 * pairs, groups};
            wide_sums_s16(&job);
            store_s16(acc, table, all_mulh, n, lo, hi, o0, o1);
        }
    }
}

/*
 * Channels per chunk of conv_s16_wide (even), or 0 where it does not pay or cannot run: more groups than
 * its unrolled run, more than two chunks of widened weights (the columns are filled once per chunk), or an
 * int32 bias (pixels_pair_s16 handles those).
 */
static int s16_wide_plan(const gemm_ctx_t *g) {
    const int groups = (g->k + 3) >> 2;
    if (!g->p->acc64 || groups > S16_WIDE_GROUPS || ((g->in_c & 3) && !g->padded && g->k != g->k4)) {
        return 0;
    }
    /* 16 bytes per pair and group on the stack; none with the compiler's widened weights */
    int per_chunk = pre_widened(g) ? 2 * S16_CHUNK_PAIRS : (S16_WIDE_WEIGHT_BYTES / (16 * groups)) * 2;
    per_chunk = per_chunk < 2 * S16_CHUNK_PAIRS ? per_chunk : 2 * S16_CHUNK_PAIRS; /* the sums' buffer */
    if (per_chunk < 2 || (g->out_c + per_chunk - 1) / per_chunk > 2) {
        return 0;
    }
    const int chunks = (g->out_c + per_chunk - 1) / per_chunk;
    return (((g->out_c + chunks - 1) / chunks) + 1) & ~1;
}

/* int16x8 on the im2col path: pixel pairs, all channels each (pixels_pair_s16, or the int64 route). */
static void conv_s16_pairs(const gemm_ctx_t *g, int fast, int16_t *output, int pixels) {
    int16_t buf[GEMM_COLUMN_SLOTS] __attribute__((aligned(8)));
    int32_t table[4 * S16_TABLE_CHANNELS];
    const int all_mulh = fast && g->p->acc64 ? tm_dsp_s16_table(g->p, (const int64_t *)g->bias_any, 0, g->out_c, table) : 0;
    for (int pix = 0; pix < pixels; pix += 2) {
        const int two = pix + 1 < pixels;
        int16_t *o0 = output + pix * g->out_c, *o1 = output + (two ? pix + 1 : pix) * g->out_c;
        fill_column_s16(g, buf, pix, 0);
        fill_column_s16(g, buf, two ? pix + 1 : pix, 1);
        if (fast) {
            pixels_pair_s16(g, table, all_mulh, buf, o0, o1);
        } else {
            pixels_pair_s16_long(g, buf, o0, o1);
        }
    }
}

void tm_dsp_conv_2d_gemm_s16(const tm_conv_params_t *p, const int16_t *input, const int8_t *filter, const void *bias,
                             int16_t *output, const int32_t in_dims[4], const int32_t f_dims[4],
                             const int32_t out_dims[4]) {
    gemm_ctx_t g = {
        .p = p, .filter = filter, .bias_any = bias,
        .in_h = in_dims[1], .in_w = in_dims[2], .in_c = in_dims[3], .f_h = f_dims[1], .f_w = f_dims[2],
        .out_w = out_dims[2], .out_c = out_dims[3], .act_min = p->act_min, .act_max = p->act_max,
    };
    g.k = g.f_h * g.f_w * g.in_c;
    g.k4 = g.k & ~3;
    const int fast = s16_fits_int32(&g);
    /* staged columns pad the last group (pixels_pair_s16's chunk_sums); the int64 route takes the tail apart */
    g.padded = fast && (g.in_c & 3) != 0 && g.k != g.k4 && g.k4 + 4 <= S16_STAGE_TAPS;
    g.w16 = pre_widened(&g) && g.k == g.k4 ? p->weights16 : 0; /* gemm_pairs16 in chunk_sums */
    const int pixels = out_dims[1] * out_dims[2];
    const int chunk = fast ? s16_wide_plan(&g) : 0;
    g.natural = chunk || (fast && g.w16); /* s16_natural: where the weights are widened ones */
    for (int b = 0; b < in_dims[0]; ++b) {
        g.input16 = input + b * g.in_h * g.in_w * g.in_c;
        int16_t *out_b = output + b * pixels * g.out_c;
        if (chunk) {
            conv_s16_wide(&g, out_b, pixels, chunk);
        } else {
            conv_s16_pairs(&g, fast, out_b, pixels);
        }
    }
}

int tm_dsp_conv_2d_gemm_fits(int k) { return k <= TM_DSP_GEMM_MAX_TAPS; }

void tm_dsp_conv_2d_gemm(const tm_conv_params_t *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                         int8_t *output, const int32_t in_dims[4], const int32_t f_dims[4], const int32_t out_dims[4]) {
    int16_t buf[GEMM_COLUMN_SLOTS] __attribute__((aligned(8)));
    gemm_ctx_t g = {
        .p = p, .filter = filter, .bias = bias,
        .in_h = in_dims[1], .in_w = in_dims[2], .in_c = in_dims[3], .f_h = f_dims[1], .f_w = f_dims[2],
        .out_w = out_dims[2], .out_c = out_dims[3],
        .out_offset = p->output_offset, .act_min = p->act_min, .act_max = p->act_max,
    };
    int32_t rq_table[3 * RQ_TABLE_CHANNELS];
    const int rq_kind = build_rq_table(p, g.out_c, rq_table);
    g.rq_table = rq_kind ? rq_table : 0;
    g.rq_sat = rq_kind == 2;
    g.k = g.f_h * g.f_w * g.in_c;
    g.k4 = g.k & ~3;
    g.padded = (g.in_c & 3) != 0 && g.k != g.k4;
    g.w16 = pre_widened(&g) && g.k == g.k4 ? p->weights16 : 0;
    const int pixels = out_dims[1] * out_dims[2];
    for (int b = 0; b < in_dims[0]; ++b) {
        g.input = input + b * g.in_h * g.in_w * g.in_c;
        int8_t *out_b = output + b * pixels * g.out_c;
        for (int pix = 0; pix < pixels; pix += 2) {
            const int two = pix + 1 < pixels;
            fill_column(&g, buf, pix, 0);
            fill_column(&g, buf, two ? pix + 1 : pix, 1); /* a lone last pixel: computed twice, kept once */
            pixels_pair(&g, buf, out_b + pix * g.out_c, two ? out_b + (pix + 1) * g.out_c : 0);
        }
    }
}

#endif /* TM_HAVE_DSP */
