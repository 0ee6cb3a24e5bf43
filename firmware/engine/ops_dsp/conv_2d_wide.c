/*
 * CONV_2D, int8, path of the DSP kernel over weights widened once per op (conv_2d.c calls it first; it
 * returns 0 for what it does not cover, which then takes the im2col path of conv_2d_gemm.c).
 *
 * Covers: an even number of output channels, K = f_h * f_w * in_c taps per pixel with K rounded up to a
 * multiple of 4 at most WIDE_MAX_TAPS, right shifts only, the activation range all of int8 (no fused
 * activation, or ReLU with output zero point -128: every layer of VWW and KWS), and sums that cannot
 * reach 2^30 in magnitude (|bias| + K * 255 * 128 < 2^30; always, in practice).
 *
 * The output channels are taken in chunks whose weights, widened to int16 (SXTB16 order, the K % 4 last
 * taps padded with zero weights), fit WIDE_WEIGHT_BYTES on the stack; where the compiler has widened
 * them already (p->weights16, host/compiler/ops/conv.py: the same layout for all channels, in flash
 * where TM_CONV_WEIGHTS16 is set), a chunk's are read from there.  For each chunk, each pair of
 * output pixels is put into a column buffer as gemm does (int16, input offset added, out-of-image and
 * padding taps 0); then one assembly call does all channel pairs of the chunk: per 4 taps one LDM of
 * the two pixels' taps, one LDM of the two channels' widened weights and 8 SMLAD (10 instructions per
 * 16 MACs, fully unrolled: the call jumps into a run of WIDE_MAX_GROUPS groups at the op's group count,
 * so there is no loop counter).  The requantization follows in the same call, with the sums still in
 * registers, 7 instructions per output:
 *   SRDHM(acc, M) = floor((acc * M + 2^30) / 2^31) = floor((2 acc * M + 2^31) / 2^32) = SMMULR(2 acc, M)
 * (exact while 2 acc fits int32, hence the bound on the sums), then the rounding right shift by r, ties
 * away from zero, floor((x + 2^(r-1) - [x < 0]) / 2^r), with the output offset o folded in as o * 2^r
 * (|x| < 2^30, |o * 2^r| < 2^27: no overflow), and SSAT #8 as the clamp.
 *
 * Scratch (stack, while a CONV_2D runs): widened weights and columns, the requantization table of up to
 * WIDE_MAX_CHUNK channels and, for in_c % 4 != 0, the staging of one pixel's taps; the bytes are
 * tm_dsp_conv_2d_wide_scratch_bytes (the compiler's figure, host/compiler/ops/conv.py).
 */
#include "dsp_conv.h"

#define WIDE_MAX_TAPS 256 /* taps per pixel, rounded up to a multiple of 4 */
#define WIDE_MAX_GROUPS (WIDE_MAX_TAPS / 4)
#define WIDE_WEIGHT_BYTES 9216
#define WIDE_SCRATCH_BYTES 10240 /* widened weights + columns */
#define WIDE_MAX_CHUNK 64 /* output channels per chunk (table) */
#define WIDE_TABLE_WORDS (4 + 10 * (WIDE_MAX_CHUNK / 2)) /* see wide_pairs' table */
#define WIDE_STAGE_BYTES (WIDE_MAX_TAPS + 8) /* int8 taps of one pixel, in_c % 4 != 0 */

/*
 * Whether an op of these dims takes the wide path, and how its output channels are split: channels per
 * chunk (even) whose widened weights fit WIDE_WEIGHT_BYTES; with more than one chunk and few pixels, the
 * columns of all pixels are filled once (WIDE_SCRATCH_BYTES less the columns for the weights) instead of
 * once per chunk.  Declares pixels, max_chunk, cols_bytes, all_cols and chunks in the function that uses
 * it and runs DECLINE where the dims or the activation range leave the op to the im2col path.  A macro
 * rather than a function so that the kernel compiles to the code it had before the scratch-size
 * function shared the plan (a function moved gcc's register allocation: -2,480 instructions on VWW).
 */
#define WIDE_PLAN(p, out_c, kp, PIXELS, DECLINE)                                                          \
    if (((out_c) & 1) || (out_c) < 2 || (kp) > WIDE_MAX_TAPS || (p)->act_min != -128 ||                  \
        (p)->act_max != 127) {                                                                            \
        DECLINE;                                                                                          \
    }                                                                                                     \
    const int pixels = (PIXELS);                                                                          \
    int max_chunk = WIDE_WEIGHT_BYTES / (2 * (kp));                                                       \
    max_chunk = (max_chunk < WIDE_MAX_CHUNK ? max_chunk : WIDE_MAX_CHUNK) & ~1;                           \
    const int cols_bytes = ((pixels + 1) / 2) * 4 * (kp);                                                 \
    const int all_cols = (out_c) > max_chunk && cols_bytes + 2 * 2 * (kp) <= WIDE_SCRATCH_BYTES;          \
    if (all_cols) {                                                                                       \
        max_chunk = (WIDE_SCRATCH_BYTES - cols_bytes) / (2 * (kp));                                       \
        max_chunk = (max_chunk < WIDE_MAX_CHUNK ? max_chunk : WIDE_MAX_CHUNK) & ~1;                       \
    }                                                                                                     \
    const int chunks = ((out_c) + max_chunk - 1) / max_chunk;                                             \
    if (!all_cols && pixels < 2 * chunks) {                                                               \
        DECLINE; /* few pixels and many chunks: the columns redone per chunk cost more than the faster    \
                  * products save */                                                                      \
    }

int32_t tm_dsp_conv_2d_wide_scratch_bytes(const tm_conv_params_t *p, const tm_conv_dims_t *d) {
    const int out_c = d->out_c, kp = (d->f_h * d->f_w * d->f_c + 3) & ~3;
    WIDE_PLAN(p, out_c, kp, d->out_h * d->out_w, return 0)
    const int32_t stage = (d->in_c & 3) ? WIDE_STAGE_BYTES : 0; /* wide_fill's, under the kernel's frame */
    return WIDE_SCRATCH_BYTES + WIDE_TABLE_WORDS * (int32_t)sizeof(int32_t) + stage;
}

#if TM_HAVE_DSP
#include "dsp_common.h"

#define WIDE_STR(x) #x
#define WIDE_XSTR(x) WIDE_STR(x)

/* Work of wide_pairs (read by the assembly: keep the field offsets). */
typedef struct {
    const int16_t *buf;   /* +0  the two pixels' taps, groups of 4 (pixel 0 lo, hi, pixel 1 lo, hi) */
    const int32_t *w;     /* +4  the chunk's widened weights (per pair, per group: ch0 lo, hi, ch1 lo, hi) */
    const int32_t *table; /* +8  biases of the first pair (b0, b1, b0, b1), then per pair 10 words */
    int8_t *out0, *out1;  /* +12 +16 outputs of the chunk's first channel */
    int8_t *out0_end;     /* +20 out0 + channels of the chunk */
    int32_t groups;       /* +24 groups of 4 taps (1 .. WIDE_MAX_GROUPS) */
} wide_job_t;

/* acc: doubled (unless the weights are), SMMULR by M, rounding right shift by s with the offset folded into c, SSAT #8 */
#define WIDE_RQ(A, M, C, S)                   \
    WIDE_DOUBLE(A)                            \
    "smmulr  " A ", " A ", " M "\n"           \
    "add     " A ", " A ", " A ", asr #31\n"  \
    "add     " A ", " A ", " C "\n"           \
    "asr     " A ", " A ", " S "\n"           \
    "ssat    " A ", #8, " A "\n"

/*
 * Table: words 0..3 the first pair's biases (b0, b1, b0, b1); then per pair M0, c0, r0, M1, c1, r1 and the
 * next pair's biases (b0, b1, b0, b1; zeros after the last).  Registers in the unrolled MAC: r0 taps,
 * r1 weights, r3 = pixel 0 ch 0, r4 = pixel 0 ch 1, r5 = pixel 1 ch 0, r6 = pixel 1 ch 1, r7-r10 taps,
 * r2, r11, r12, lr weights.  Stack: [sp] buf, +4 table, +8 out0, +12 out1, +16 out0_end, +20 entry.
 */
#define WIDE_PAIRS_ASM                                                      \
        "push    {r4-r11, lr}\n" \
        "sub     sp, sp, #24\n" \
        "ldm     r0, {r1-r7}\n" \
        "adr.w   r8, 9f\n" \
        "sub     r8, r8, r7, lsl #5\n" \
        "sub     r8, r8, r7, lsl #3\n" /* 40 bytes per group */ \
        "orr     r8, r8, #1\n" \
        "stm     sp, {r1, r3, r4, r5, r6, r8}\n" \
        "mov     r0, r1\n" \
        "mov     r1, r2\n" \
        "ldr     r2, [sp, #4]\n" \
        "ldm     r2!, {r3-r6}\n" \
        "str     r2, [sp, #4]\n" \
        "ldr     pc, [sp, #20]\n" \
        ".rept " WIDE_XSTR(WIDE_MAX_GROUPS) "\n" \
        TM_DSP_WIDE_GROUP_ASM \
        ".endr\n" \
        "9:\n" \
        "ldr     r0, [sp, #4]\n" \
        "ldm     r0!, {r7-r12}\n" \
        "ldrd    r2, lr, [sp, #8]\n" \
        WIDE_RQ("r3", "r7", "r8", "r9") \
        WIDE_RQ("r5", "r7", "r8", "r9") \
        WIDE_RQ("r4", "r10", "r11", "r12") \
        WIDE_RQ("r6", "r10", "r11", "r12") \
        "strb    r3, [r2], #1\n" \
        "strb    r4, [r2], #1\n" \
        "strb    r5, [lr], #1\n" \
        "strb    r6, [lr], #1\n" \
        "ldm     r0!, {r3-r6}\n" \
        "str     r0, [sp, #4]\n" \
        "strd    r2, lr, [sp, #8]\n" \
        "ldr     r7, [sp, #16]\n" \
        "ldr     r0, [sp]\n" \
        "cmp     r2, r7\n" \
        "it      ne\n" \
        "ldrne   pc, [sp, #20]\n" \
        "add     sp, sp, #24\n" \
        "pop     {r4-r11, pc}\n"

#define WIDE_DOUBLE(A) "lsl     " A ", " A ", #1\n"
__attribute__((naked)) static void wide_pairs(const wide_job_t *job __attribute__((unused))) {
    __asm__ volatile(WIDE_PAIRS_ASM);
}
#undef WIDE_DOUBLE

/* The same over doubled weights (sums already 2 acc). */
#define WIDE_DOUBLE(A) ""
__attribute__((naked)) static void wide_pairs_dbl(const wide_job_t *job __attribute__((unused))) {
    __asm__ volatile(WIDE_PAIRS_ASM);
}
#undef WIDE_DOUBLE


typedef struct {
    const tm_conv_params_t *p;
    const int8_t *input, *input_end; /* this batch */
    int in_h, in_w, in_c, f_h, f_w, out_w;
    int k, kp;           /* taps per pixel, rounded up to a multiple of 4 */
    int pointwise;       /* 1x1, stride 1, no padding: pixel i's taps are input + i * in_c */
    int rgb3;            /* 3x3 over 3 input channels, dilation 1 */
    int32_t off2;
} wide_ctx_t;

/* n bytes (a multiple of 4) at src widened into the slots of pixel `col` from group g. */
static inline void widen_words(int16_t *buf, const int8_t *src, int n, int g, int col, int32_t off2) {
    uint32_t *dst = (uint32_t *)(void *)buf + 4 * g + 2 * col;
    for (int i = 0; i < n; i += 4, dst += 4) {
        const uint32_t x = tm_ld32(src + i);
        dst[0] = (uint32_t)__sxtab16(off2, x);
        dst[1] = (uint32_t)tm_sxtab16_ror8(off2, x);
    }
}

static inline void zero_words(int16_t *buf, int n, int g, int col) {
    uint32_t *dst = (uint32_t *)(void *)buf + 4 * g + 2 * col;
    for (int i = 0; i < n; i += 4, dst += 4) {
        dst[0] = 0, dst[1] = 0;
    }
}

/* The taps of output pixel `pix` into column `col` (kp of them: the padding taps are 0). */
static void wide_fill(const wide_ctx_t *c, int16_t *buf, int pix, int col) {
    if (c->pointwise) {
        widen_words(buf, c->input + pix * c->in_c, c->in_c, 0, col, c->off2);
        return;
    }
    const tm_conv_params_t *p = c->p;
    const int oy = pix / c->out_w, ox = pix - oy * c->out_w;
    const int y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    const int whole_rows = p->dilation_w == 1 && x0 >= 0 && x0 + c->f_w <= c->in_w;
    const int run = c->f_w * c->in_c;
    if (c->rgb3 && whole_rows && y0 >= 0 && y0 + 3 <= c->in_h) {
        /* 3x3 over 3 channels, the window in the image: rows of 9 bytes into 7 words (the 28th tap is the
         * zero point, which adds 0), by unaligned loads and shifts within each row */
        const int8_t *r0 = c->input + (y0 * c->in_w + x0) * 3, *r1 = r0 + c->in_w * 3, *r2 = r1 + c->in_w * 3;
        uint16_t h;
        memcpy(&h, r1 + 7, sizeof h);
        const uint32_t w[7] = {
            tm_ld32(r0), tm_ld32(r0 + 4), (uint8_t)r0[8] | (tm_ld32(r1) << 8), tm_ld32(r1 + 3),
            h | (tm_ld32(r2) << 16), tm_ld32(r2 + 2), (tm_ld32(r2 + 5) >> 8) | ((uint32_t)(uint8_t)(-p->input_offset) << 24),
        };
        uint32_t *dst = (uint32_t *)(void *)buf + 2 * col;
        for (int i = 0; i < 7; ++i, dst += 4) {
            dst[0] = (uint32_t)__sxtab16(c->off2, w[i]);
            dst[1] = (uint32_t)tm_sxtab16_ror8(c->off2, w[i]);
        }
        return;
    }
    if ((c->in_c & 3) == 0) {
        int g = 0;
        for (int fy = 0; fy < c->f_h; ++fy) {
            const int y = y0 + fy * p->dilation_h;
            const int row_ok = y >= 0 && y < c->in_h;
            if (row_ok && whole_rows) {
                widen_words(buf, c->input + (y * c->in_w + x0) * c->in_c, run, g, col, c->off2);
                g += run >> 2;
                continue;
            }
            for (int fx = 0; fx < c->f_w; ++fx, g += c->in_c >> 2) {
                const int x = x0 + fx * p->dilation_w;
                if (row_ok && x >= 0 && x < c->in_w) {
                    widen_words(buf, c->input + (y * c->in_w + x) * c->in_c, c->in_c, g, col, c->off2);
                } else {
                    zero_words(buf, c->in_c, g, col);
                }
            }
        }
        return;
    }
    /* in_c not a multiple of 4: the taps as int8 in natural order first (out-of-image taps and the
     * padding = the input zero point, which adds 0), then widened */
    int8_t stage[WIDE_STAGE_BYTES];
    const int8_t zp = (int8_t)(-p->input_offset);
    int8_t *d = stage;
    for (int fy = 0; fy < c->f_h; ++fy, d += run) {
        const int y = y0 + fy * p->dilation_h;
        if (y < 0 || y >= c->in_h) {
            memset(d, zp, (size_t)run);
            continue;
        }
        const int8_t *row = c->input + y * c->in_w * c->in_c;
        if (whole_rows) {
            const int8_t *s = row + x0 * c->in_c;
            int i = 0;
            if (s + ((run + 3) & ~3) <= c->input_end) { /* by words, the last one past the run (overwritten) */
                for (; i < run; i += 4) {
                    tm_st32(d + i, tm_ld32(s + i));
                }
                continue;
            }
            for (; i + 4 <= run; i += 4) {
                tm_st32(d + i, tm_ld32(s + i));
            }
            for (; i < run; ++i) {
                d[i] = s[i];
            }
            continue;
        }
        for (int fx = 0; fx < c->f_w; ++fx) {
            const int x = x0 + fx * p->dilation_w;
            for (int i = 0; i < c->in_c; ++i) {
                d[fx * c->in_c + i] = x >= 0 && x < c->in_w ? row[x * c->in_c + i] : zp;
            }
        }
    }
    for (int i = c->k; i < c->kp; ++i) {
        stage[i] = zp;
    }
    widen_words(buf, stage, c->kp, 0, col, c->off2);
}

/* Widened weights of channels [oc0, oc0 + n) (n even), per pair and group: ch0 lo, hi, ch1 lo, hi. */
static void widen_weights(const int8_t *filter, int k, int kp, int oc0, int n, int dbl, int32_t *w) {
    int32_t *const w0 = w;
    const int full = k >> 2;
    for (int j = 0; j < n; j += 2) {
        const int8_t *f0 = filter + (oc0 + j) * k, *f1 = f0 + k;
        int g = 0;
        for (; g < full; ++g, w += 4) {
            const uint32_t a = tm_ld32(f0 + 4 * g), b = tm_ld32(f1 + 4 * g);
            w[0] = __sxtb16(a), w[1] = tm_sxtb16_ror8(a);
            w[2] = __sxtb16(b), w[3] = tm_sxtb16_ror8(b);
        }
        if (g < (kp >> 2)) {
            int8_t ta[4] = {0, 0, 0, 0}, tb[4] = {0, 0, 0, 0};
            for (int i = 4 * g; i < k; ++i) {
                ta[i - 4 * g] = f0[i], tb[i - 4 * g] = f1[i];
            }
            const uint32_t a = tm_ld32(ta), b = tm_ld32(tb);
            w[0] = __sxtb16(a), w[1] = tm_sxtb16_ror8(a);
            w[2] = __sxtb16(b), w[3] = tm_sxtb16_ror8(b);
            w += 4;
        }
    }
    for (int32_t *q = dbl ? w0 : w; q < w; q += 2) { /* |2 w| <= 256: still int16 */
        q[0] = __sadd16(q[0], q[0]), q[1] = __sadd16(q[1], q[1]);
    }
}

#define WIDE_UNSUPPORTED 0
#define WIDE_PLAIN 1
#define WIDE_CONSTANT 2 /* the output is the output offset whatever the input */

/* Table words of channel oc for sums in [lo, hi], or WIDE_UNSUPPORTED (see tm_dsp_wide_rq). */
static int wide_channel_in(const tm_conv_params_t *p, int oc, int64_t lo, int64_t hi, int32_t *t) {
    const int32_t m = p->out_multiplier[oc], shift = p->out_shift[oc], right = -shift, o = p->output_offset;
    if (m < 0 || shift > 0 || lo < INT32_MIN || hi > INT32_MAX) {
        return WIDE_UNSUPPORTED;
    }
    /* plain first (exact whenever it applies, constant channels included): no 64-bit products */
    if (right >= 1 && right <= 24 && lo > -(1LL << 30) && hi < (1LL << 30) && o > -(1 << (27 - right)) &&
        o < (1 << (27 - right))) {
        if (t) {
            t[0] = m, t[1] = (int32_t)(1u << (right - 1)) + (int32_t)((uint32_t)o << right), t[2] = right;
        }
        return WIDE_PLAIN;
    }
    const int32_t v_lo = tm_multiply_by_quantized_multiplier((int32_t)lo, m, shift);
    const int32_t v_hi = tm_multiply_by_quantized_multiplier((int32_t)hi, m, shift);
    if (v_lo == v_hi) {
        if (t) {
            const int32_t v = tm_clamp_i32(v_lo + o, p->act_min, p->act_max);
            t[0] = 0, t[1] = 2 * v, t[2] = 1;
        }
        return WIDE_CONSTANT;
    }
    return WIDE_UNSUPPORTED;
}

/*
 * How channel oc requantizes (and its table words M, c, r when t is given; its weights are w[i * w_stride]).  The sums lie in
 * [bias - B, bias + B] with B = K * 255 * 128, and the requantization (TFLite's, tm_fixedpoint.h) is
 * monotone in the sum for a right shift and a non-negative multiplier: when both ends give the same
 * output the channel is a constant (M = 0, c = 2 v, r = 1).  That covers multipliers of 0 and the
 * channels of tiny scales (right shifts beyond 24, biases near +-2^30) that deep layers have.  Otherwise
 * the table needs sums within +-2^30 (2 acc fits int32), a right shift of 1 to 24 and |o * 2^r| < 2^27.
 * When the coarse bound decides nothing, the exact range of the sums is taken from the channel's
 * weights (each tap adds w * (x + offset), x + offset in [offset - 128, offset + 127], which holds 0, the
 * out-of-image taps).
 */
int tm_dsp_wide_rq_compute(const tm_conv_params_t *p, const int8_t *w, int k, int w_stride, const int32_t *bias,
                           int oc, int32_t *t) {
    const int64_t b = bias ? bias[oc] : 0, coarse = (int64_t)k * 255 * 128;
    const int kind = wide_channel_in(p, oc, b - coarse, b + coarse, t);
    if (kind != WIDE_UNSUPPORTED) {
        return kind;
    }
    int32_t sum = 0, abs_sum = 0; /* sum of the weights and of their magnitudes (< 2^17: k <= 1024) */
    int i = 0;
    if (w_stride == 1) { /* by words: USADA8 of w + 128 against 128, SMLAD of the widened pairs by 1 */
        const int32_t ones = 0x00010001;
        for (; i + 4 <= k; i += 4) {
            const uint32_t x = tm_ld32(w + i);
            abs_sum = (int32_t)__usada8(x ^ 0x80808080u, 0x80808080u, (uint32_t)abs_sum);
            sum = __smlad(__sxtb16(x), ones, sum);
            sum = __smlad(tm_sxtb16_ror8(x), ones, sum);
        }
    }
    for (; i < k; ++i) {
        const int32_t v = w[i * w_stride];
        sum += v, abs_sum += v < 0 ? -v : v;
    }
    const int64_t pos = (abs_sum + sum) / 2, neg = (sum - abs_sum) / 2;
    const int32_t xl = p->input_offset - 128, xh = p->input_offset + 127;
    return wide_channel_in(p, oc, b + pos * xl + neg * xh, b + pos * xh + neg * xl, t);
}

int tm_dsp_conv_2d_wide(const tm_conv_params_t *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                        int8_t *output, const int32_t in_dims[4], const int32_t f_dims[4], const int32_t out_dims[4]) {
    const int out_c = out_dims[3];
    const int k = f_dims[1] * f_dims[2] * f_dims[3], kp = (k + 3) & ~3;
    WIDE_PLAN(p, out_c, kp, out_dims[1] * out_dims[2], return 0)
    for (int oc = 0; oc < out_c; ++oc) {
        if (tm_dsp_wide_rq(p, filter + oc * k, k, 1, bias, oc, 0) == WIDE_UNSUPPORTED) {
            return 0;
        }
    }
    /* doubling the weights (measured: worth it beyond about 1.5 kp pixel pairs) instead of the sums (4 per
     * channel pair and pixel pair) */
    const int dbl = ((pixels + 1) / 2) * 4 > 6 * kp;
    /* weights widened by the compiler: no widened weights in the scratch, so chunks are bounded by the
     * table only and the columns of all pixels may take the whole scratch (fewer chunks: fewer fills) */
    const int pre = p->weights16 && p->weights16_doubled == dbl;
    int chunk = (((out_c + chunks - 1) / chunks) + 1) & ~1, whole_cols = all_cols;
    if (pre) {
        const int pre_chunks = (out_c + WIDE_MAX_CHUNK - 1) / WIDE_MAX_CHUNK;
        chunk = (((out_c + pre_chunks - 1) / pre_chunks) + 1) & ~1;
        whole_cols = pre_chunks > 1 && cols_bytes <= WIDE_SCRATCH_BYTES;
    }

    /* the widened weights, then the column buffer (one pixel pair, or all of them) */
    int32_t scratch[WIDE_SCRATCH_BYTES / 4] __attribute__((aligned(8)));
    int32_t table[WIDE_TABLE_WORDS];
    int32_t *wbuf = scratch;
    int16_t *cols = (int16_t *)(void *)(scratch + (pre ? 0 : all_cols ? (WIDE_SCRATCH_BYTES - cols_bytes) / 4
                                                                      : WIDE_WEIGHT_BYTES / 4));
    wide_ctx_t c = {
        .p = p, .in_h = in_dims[1], .in_w = in_dims[2], .in_c = in_dims[3], .f_h = f_dims[1], .f_w = f_dims[2],
        .out_w = out_dims[2], .k = k, .kp = kp, .off2 = tm_pack_offset(p->input_offset),
    };
    c.pointwise = c.f_h == 1 && c.f_w == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 &&
                  p->pad_w == 0 && out_dims[1] == c.in_h && out_dims[2] == c.in_w;
    c.rgb3 = c.f_h == 3 && c.f_w == 3 && c.in_c == 3 && p->dilation_h == 1 && p->dilation_w == 1;
    for (int b = 0; b < in_dims[0]; ++b) {
        c.input = input + b * c.in_h * c.in_w * c.in_c;
        c.input_end = c.input + c.in_h * c.in_w * c.in_c;
        if (whole_cols) {
            for (int pix = 0; pix < pixels; pix += 2) {
                int16_t *buf = cols + pix * kp; /* 2 * kp per pair */
                wide_fill(&c, buf, pix, 0);
                wide_fill(&c, buf, pix + 1 < pixels ? pix + 1 : pix, 1);
            }
        }
        for (int oc0 = 0; oc0 < out_c; oc0 += chunk) {
            const int n = out_c - oc0 < chunk ? out_c - oc0 : chunk;
            const int32_t *w = wbuf;
            if (pre) { /* per channel pair kp words */
                w = (const int32_t *)(const void *)p->weights16 + (oc0 >> 1) * kp;
            } else {
                widen_weights(filter, k, kp, oc0, n, dbl, wbuf);
            }
            for (int j = 0; j < n; j += 2) {
                int32_t *t = table + 4 + 10 * (j >> 1);
                for (int i = 0; i < 2; ++i) {
                    const int oc = oc0 + j + i;
                    tm_dsp_wide_rq(p, filter + oc * k, k, 1, bias, oc, t + 3 * i);
                    const int32_t bv = (int32_t)((uint32_t)(bias ? bias[oc] : 0) << dbl); /* constant: ignored */
                    t[-4 + i] = bv, t[-2 + i] = bv; /* this pair's biases, in the previous record */
                }
            }
            for (int i = 0; i < 4; ++i) {
                table[4 + 10 * (n >> 1) - 4 + i] = 0;
            }
            int8_t *out_b = output + b * pixels * out_c + oc0;
            for (int pix = 0; pix < pixels; pix += 2) {
                const int two = pix + 1 < pixels;
                int16_t *buf = whole_cols ? cols + pix * kp : cols;
                if (!whole_cols) {
                    wide_fill(&c, buf, pix, 0);
                    wide_fill(&c, buf, two ? pix + 1 : pix, 1); /* a lone last pixel: computed and stored twice */
                }
                int8_t *o0 = out_b + pix * out_c, *o1 = two ? o0 + out_c : o0;
                const wide_job_t job = {buf, w, table, o0, o1, o0 + n, kp >> 2};
                (dbl ? wide_pairs_dbl : wide_pairs)(&job);
            }
        }
    }
    return 1;
}

#endif /* TM_HAVE_DSP */
