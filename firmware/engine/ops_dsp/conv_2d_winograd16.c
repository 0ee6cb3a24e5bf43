/*
 * CONV_2D, int16x8, 3x3 filter, stride 1, dilation 1, over a non-negative input: the Winograd F(2, 3) path of
 * the DSP kernel along the rows (conv_2d.c tries it first where the compiler transformed the filter, p->winograd,
 * which it does only for an input made by a ReLU: host/compiler/ops/conv.py, winograd16_weights).
 *
 * Two neighbouring outputs of a row (a tile) need 6 multiplications per input channel and filter row done
 * directly and 4 in the Winograd domain (Lavin & Gray 2016): with d the 4 inputs of the tile's row segment and g
 * the filter row,
 *     (y0, y1) = A^T [ (G g) . (B^T d) ],   summed over the 3 filter rows and the input channels,
 *     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *     A^T = [1 1 1 0; 0 1 -1 -1]
 * One dimension, not conv_2d_winograd.c's two: SMLAD takes int16 operands, and only in one dimension does
 * V = B^T d of int16 inputs stay int16.
 * Why the result is bit-identical to the portable kernel's sum: the compiler stores U = (2G) g, all integers
 * (|U| <= 3 * 127 = 381).  The input is in [0, 32767] (a ReLU's output, zero point 0; checked here, else the op
 * goes to conv_2d_gemm.c): then d0 - d2, d2 - d1 and d1 - d3 are within +-32767, and d1 + d2, in [0, 65534],
 * is stored less 32768 (SADD16 then EOR with 0x80008000), so V is int16.  The sums (SMLAD, ADD) are mod 2^32
 * and the identity holds over the integers: A^T (U . V) plus the offset's share 32768 * sum U1 (per channel:
 * wino16_offset) is 2 * sum mod 2^32, which is 2 * sum exactly as the compiler stored U only where
 * |bias| + 32767 * max(sum of the positive weights, sum of the negative ones' magnitudes) < 2^30 for every channel.
 * An arithmetic shift right by 1 gives the sum; bias, requantization and clamp are conv_2d_gemm.c's int32 route
 * (tm_dsp_s16_table, which also needs |bias| + 32768 * sum |w| < 2^31: tm_dsp_s16_channels_fit).
 *
 * Layout (int16, natural order: a group of 4 channels is the words (c0, c1) and (c2, c3)): for two neighbouring
 * tiles (a tile pair, 4 outputs of a row), V is per position t (0 .. 3) a control word (where the products loop
 * jumps: the run of the op's group count, 3 filter rows of in_c / 4 groups) and per filter row and group the
 * words of tile 0 then tile 1, and a last control word (out of the loop); the compiler's U is per output-channel
 * pair, per position, per filter row, per group, the words of channel 0 then channel 1.  The products of one
 * tile pair and one channel pair are conv_2d_winograd.c's loop (TM_DSP_WIDE_GROUP_ASM, 18 cycles per 16 MACs)
 * into 4 sums per position, combined by A^T at its end, requantized and stored there too (wino16_rq) where the
 * table's form and the clamp allow, else in C (wino16_store).  The tile pairs are taken down each column: the
 * next output row's filter rows 0 and 1 read the input rows of this one's 1 and 2, so V's rows move up
 * (wino16_next_row, about 2 cycles a word) and only one input row is transformed per tile pair.
 *
 * Scratch (stack): V of one tile pair at its largest (WINO16_MAX_IN_C), the 8 combined sums, a padding pixel, the
 * requantization table and offsets of up to WINO16_CHUNK channels, the pixel pointers and wino16_sums' frame:
 * tm_dsp_conv_2d_winograd16_scratch_bytes (host/compiler/ops/conv.py computes the same).
 */
#include "dsp_conv.h"

#define WINO16_MAX_IN_C 128
#define WINO16_MAX_GROUPS (3 * WINO16_MAX_IN_C / 4) /* per position: 3 filter rows of in_c / 4 groups */
#define WINO16_V_WORDS (4 * (4 * WINO16_MAX_GROUPS + 1) + 1)
#define WINO16_M_WORDS 8
#define WINO16_PAD_WORDS (WINO16_MAX_IN_C / 2)
#define WINO16_CHUNK 64 /* output channels per requantization table */
#define WINO16_TABLE_WORDS (7 * WINO16_CHUNK) /* tm_dsp_s16_table's 4 words, the offset's share, wino16_rq's 2 */
#define WINO16_FRAME_WORDS (18 + 2 + 16 + 9) /* pixel pointers; wino16_sums' job, sums and saved registers */
#define WINO16_SCRATCH_WORDS \
    (WINO16_V_WORDS + WINO16_M_WORDS + WINO16_PAD_WORDS + WINO16_TABLE_WORDS + WINO16_FRAME_WORDS)

int tm_dsp_winograd16_takes(const tm_conv_params_t *p, const tm_conv_dims_t *d) {
    return d->f_h == 3 && d->f_w == 3 && d->f_c == d->in_c && p->stride_h == 1 && p->stride_w == 1 &&
           p->dilation_h == 1 && p->dilation_w == 1 && p->input_offset == 0 && d->in_c % 4 == 0 && d->in_c >= 4 &&
           d->in_c <= WINO16_MAX_IN_C && d->out_c % 2 == 0 && d->out_c >= 2 && d->out_w >= 2;
}

int32_t tm_dsp_conv_2d_winograd16_scratch_bytes(const tm_conv_params_t *p, const tm_conv_dims_t *d) {
    return tm_dsp_winograd16_takes(p, d) ? WINO16_SCRATCH_WORDS * (int32_t)sizeof(int32_t) : 0;
}

#if TM_HAVE_DSP
#include "dsp_common.h"

#define WINO16_STR(x) #x
#define WINO16_XSTR(x) WINO16_STR(x)

/* Work of wino16_sums (read by the assembly: keep the field offsets). */
typedef struct {
    const int32_t *v; /* +0 the tile pair's transformed input, with its control words (wino16_input_row) */
    const int32_t *u; /* +4 the channel pair's transformed filter */
    int32_t *m;       /* +8 without a table: per sum q = 2 tile + channel, A^T's m1 - m2 - m3 at m[q], m0 + m1 + m2
                       *    at m[4 + q], for wino16_store */
    const int32_t *rq; /* +12 per channel of the pair c, M' (wino16_rq), or NULL */
    int16_t *out;      /* +16 with rq: output of tile 0's first pixel, channel 0 */
    int32_t pixel_bytes; /* +20 out_c * 2 */
    int32_t relu;      /* +24 the clamp: 1 USAT #15 (ReLU), 0 SSAT #16 (none) */
} wino16_job_t;

/* 2 (sum + bias) = A^T's combination + c, then TFLite's requantization: SMMULR by M' (wino16_rq). */
#define WINO16_RQ(X, C, M)                 \
    "add     " X ", " X ", " C "\n"        \
    "smmulr  " X ", " X ", " M "\n"

/*
 * The 4 sums (tile 0 channel 0, tile 0 channel 1, tile 1 channel 0, tile 1 channel 1) of each position of a tile
 * pair and a channel pair: the Winograd paths' loop (TM_DSP_WINO_SUMS_ASM, dsp_conv.h) over runs of up to
 * WINO16_MAX_GROUPS groups, whose exit (wino16_run_exit) combines the pushed sums as A^T does.  With job->rq the outputs follow in the same
 * call (2 instructions each, then the clamp, two channels per word stored), else the combined sums go to job->m
 * for wino16_store.
 */
__attribute__((naked)) static void wino16_sums(const wino16_job_t *job __attribute__((unused))) {
    __asm__ volatile(
        TM_DSP_WINO_SUMS_ASM(WINO16_XSTR(WINO16_MAX_GROUPS), "wino16_run_end", "wino16_run_exit")
        /* A^T: per sum q, m0 + m1 + m2 to job->m[4 + q] and m1 - m2 - m3 to job->m[q] */
        "ldm     sp!, {r2-r9}\n" /* positions 3 (r2-r5) and 2 (r6-r9): the last pushed lowest */
        "add     r2, r2, r6\n"    /* m2 + m3 */
        "add     r3, r3, r7\n"
        "add     r4, r4, r8\n"
        "add     r5, r5, r9\n"
        "ldm     sp!, {r10-r12, lr}\n" /* position 1 */
        "sub     r2, r10, r2\n"   /* m1 - m2 - m3 */
        "sub     r3, r11, r3\n"
        "sub     r4, r12, r4\n"
        "sub     r5, lr, r5\n"
        "add     r6, r6, r10\n"   /* m1 + m2 */
        "add     r7, r7, r11\n"
        "add     r8, r8, r12\n"
        "add     r9, r9, lr\n"
        "ldm     sp!, {r10-r12, lr}\n" /* position 0 */
        "add     r6, r6, r10\n"   /* m0 + m1 + m2 */
        "add     r7, r7, r11\n"
        "add     r8, r8, r12\n"
        "add     r9, r9, lr\n"
        "ldr     r0, [sp]\n"
        "ldr     r1, [r0, #12]\n"
        "cmp     r1, #0\n"
        "beq.w   7f\n"
        "ldm     r1, {r10-r12, lr}\n" /* channel 0's c, M' (A: r6, r8; B: r2, r4), channel 1's (r7, r9; r3, r5) */
        WINO16_RQ("r6", "r10", "r11") WINO16_RQ("r2", "r10", "r11")
        WINO16_RQ("r8", "r10", "r11") WINO16_RQ("r4", "r10", "r11")
        WINO16_RQ("r7", "r12", "lr") WINO16_RQ("r3", "r12", "lr")
        WINO16_RQ("r9", "r12", "lr") WINO16_RQ("r5", "r12", "lr")
        "ldr     r1, [r0, #24]\n"
        "cmp     r1, #0\n"
        "beq     5f\n"
        "usat    r6, #15, r6\n"
        "usat    r2, #15, r2\n"
        "usat    r8, #15, r8\n"
        "usat    r4, #15, r4\n"
        "usat    r7, #15, r7\n"
        "usat    r3, #15, r3\n"
        "usat    r9, #15, r9\n"
        "usat    r5, #15, r5\n"
        "b       6f\n"
        "5:\n"
        "ssat    r6, #16, r6\n"
        "ssat    r2, #16, r2\n"
        "ssat    r8, #16, r8\n"
        "ssat    r4, #16, r4\n"
        "ssat    r7, #16, r7\n"
        "ssat    r3, #16, r3\n"
        "ssat    r9, #16, r9\n"
        "ssat    r5, #16, r5\n"
        "6:\n" /* pixels 0 .. 3: (A0, A1), (B0, B1), (A2, A3), (B2, B3) */
        "pkhbt   r6, r6, r7, lsl #16\n"
        "pkhbt   r2, r2, r3, lsl #16\n"
        "pkhbt   r8, r8, r9, lsl #16\n"
        "pkhbt   r4, r4, r5, lsl #16\n"
        "ldr     r1, [r0, #20]\n"
        "ldr     r0, [r0, #16]\n"
        "str     r6, [r0]\n"
        "str     r2, [r0, r1]\n"
        "add     r0, r0, r1, lsl #1\n"
        "str     r8, [r0]\n"
        "str     r4, [r0, r1]\n"
        "add     sp, sp, #8\n"
        "pop     {r4-r11, pc}\n"
        "7:\n"
        "ldr     r1, [r0, #8]\n"
        "stm     r1, {r2-r9}\n"
        "add     sp, sp, #8\n"
        "pop     {r4-r11, pc}\n");
}

/* Labels in wino16_sums that its control words point to (plain labels: the Thumb bit is added where used). */
extern const char wino16_run_end[], wino16_run_exit[];

typedef struct {
    const int16_t *in;  /* this batch */
    const int16_t *pad; /* in_c zeros: a pixel outside the image */
    int in_h, in_w, in_c, groups;
} wino16_ctx_t;

/* V of one filter row of a tile pair from its 6 pixels px (words), position by position, each a run of groups of
 * 4 words (tile 0's two, tile 1's two) starting at o[t * stride]; position 1 less 32768 per channel. */
static void wino16_row(const uint32_t *const px[6], int32_t *o, int stride, int groups) {
    const uint32_t *a = px[0], *c = px[2], *e = px[4];
    int32_t *q = o;
    for (int g = 0; g < groups; ++g, a += 2, c += 2, e += 2, q += 4) { /* d0 - d2 */
        const uint32_t c0 = c[0], c1 = c[1];
        q[0] = __ssub16(a[0], c0), q[1] = __ssub16(a[1], c1);
        q[2] = __ssub16(c0, e[0]), q[3] = __ssub16(c1, e[1]);
    }
    const uint32_t *b = px[1], *d = px[3];
    c = px[2], e = px[4];
    int32_t *q1 = o + stride, *q2 = o + 2 * stride;
    for (int g = 0; g < groups; ++g, b += 2, c += 2, d += 2, e += 2, q1 += 4, q2 += 4) { /* d1 + d2, d2 - d1 */
        const uint32_t b0 = b[0], b1 = b[1], c0 = c[0], c1 = c[1], d0 = d[0], d1 = d[1], e0 = e[0], e1 = e[1];
        q1[0] = (int32_t)((uint32_t)__sadd16(b0, c0) ^ 0x80008000u);
        q1[1] = (int32_t)((uint32_t)__sadd16(b1, c1) ^ 0x80008000u);
        q1[2] = (int32_t)((uint32_t)__sadd16(d0, e0) ^ 0x80008000u);
        q1[3] = (int32_t)((uint32_t)__sadd16(d1, e1) ^ 0x80008000u);
        q2[0] = __ssub16(c0, b0), q2[1] = __ssub16(c1, b1);
        q2[2] = __ssub16(e0, d0), q2[3] = __ssub16(e1, d1);
    }
    const uint32_t *f = px[5];
    b = px[1], d = px[3];
    q = o + 3 * stride;
    for (int g = 0; g < groups; ++g, b += 2, d += 2, f += 2, q += 4) { /* d1 - d3 */
        const uint32_t d0 = d[0], d1 = d[1];
        q[0] = __ssub16(b[0], d0), q[1] = __ssub16(b[1], d1);
        q[2] = __ssub16(d0, f[0]), q[3] = __ssub16(d1, f[1]);
    }
}

/* V's filter row `row` (0 .. 2) of a tile pair from input row y, pixels x0 .. x0 + 5 (c->pad outside the image,
 * so no tap is tested). */
static void wino16_input_row(const wino16_ctx_t *c, int32_t *v, int row, int y, int x0) {
    const uint32_t *px[6];
    for (int j = 0; j < 6; ++j) {
        const int x = x0 + j;
        const int inside = (unsigned)y < (unsigned)c->in_h && (unsigned)x < (unsigned)c->in_w;
        px[j] = (const uint32_t *)(const void *)(inside ? c->in + (y * c->in_w + x) * c->in_c : c->pad);
    }
    /* after position 0's control word; 4 * 3 * groups + 1 words from position t to t + 1 */
    wino16_row(px, v + 1 + 4 * row * c->groups, 4 * 3 * c->groups + 1, c->groups);
}

/* The next output row of the same tile pair: per position, filter rows 1 and 2 move to 0 and 1 (the input rows
 * they read are the next output row's rows 0 and 1), 8 * groups words, four at a time forward (the regions overlap,
 * the destination lower; newlib's memmove took 65 k cycles more on the study's int16x8 model). */
static void wino16_next_row(const wino16_ctx_t *c, int32_t *v) {
    const int stride = 4 * 3 * c->groups + 1, row_words = 4 * c->groups;
    for (int t = 0; t < 4; ++t) {
        uint32_t *dst = (uint32_t *)(void *)(v + 1 + t * stride);
        const uint32_t *src = dst + row_words, *end = dst + 2 * row_words;
        for (; dst < end; dst += 4, src += 4) {
            const uint32_t a = src[0], b = src[1], e = src[2], f = src[3];
            dst[0] = a, dst[1] = b, dst[2] = e, dst[3] = f;
        }
    }
}

/* Whether every value of the input (n even) is non-negative: the sign bits of its words or-ed. */
static int wino16_non_negative(const int16_t *in, int n) {
    const uint32_t *w = (const uint32_t *)(const void *)in;
    uint32_t any = 0;
    int i = 0;
    for (; i + 4 <= n / 2; i += 4) {
        any |= w[i] | w[i + 1] | w[i + 2] | w[i + 3];
    }
    for (; i < n / 2; ++i) {
        any |= w[i];
    }
    return !(any & 0x80008000u);
}

/* Per channel of [k0, k0 + n): the share of position 1's offset, 32768 * sum of its U (mod 2^32). */
static void wino16_offset(const int16_t *u_all, int groups, int k0, int n, int32_t *share) {
    for (int k = k0; k < k0 + n; ++k) {
        const int16_t *u = u_all + (k >> 1) * 4 * 3 * groups * 8 + 3 * groups * 8 + 4 * (k & 1); /* position 1 */
        uint32_t sum = 0;
        for (int g = 0; g < 3 * groups; ++g, u += 8) {
            sum += (uint32_t)(u[0] + u[1] + u[2] + u[3]);
        }
        share[k - k0] = (int32_t)(sum << 15);
    }
}

/* Outputs 2 tile and 2 tile + 1 of channel ch from the combined sums m of a tile pair (Q = 2 tile + ch:
 * m[4 + Q] = m0 + m1 + m2, m[Q] = m1 - m2 - m3, wino16_sums), requantized and clamped: (A^T (U . V) + the offset's
 * share) / 2, the sum. */
#define WINO16_PAIR(Q, Y0, Y1)                                                                              \
    do {                                                                                                     \
        const uint32_t sh = (uint32_t)share[(Q) & 1];                                                       \
        const int32_t *tq = t + 4 * ((Q) & 1);                                                               \
        Y0 = tm_clamp_s16(tm_requantize_s16_at((int32_t)((uint32_t)m[4 + (Q)] + sh) >> 1, tq, mulh), kind, lo,  \
                          hi);                                                                               \
        Y1 = tm_clamp_s16(tm_requantize_s16_at((int32_t)((uint32_t)m[Q] + sh) >> 1, tq, mulh), kind, lo, hi);  \
    } while (0)

/*
 * The words of channels [k0, k0 + n) for wino16_sums' requantization where the table is of the first form (a
 * total shift right of 16..31: t[1] = reduced * 2^(32 - right), even): c = 32768 * sum U1 + 2 bias and M' = t[1] / 2.
 * A^T's combination + c is 2 (sum + bias) mod 2^32, exactly so as the compiler stored U only where
 * |bias| + 32767 * max(sum w+, sum |w-|) < 2^30; SMMULR(2 (sum + bias), M') multiplies the same 64-bit product as
 * tm_requantize_s16_at's SMMULR(sum + bias, t[1]): the same result.
 */
static void wino16_rq(const int32_t *table, const int32_t *share, int n, int32_t *rq) {
    for (int j = 0; j < n; ++j) {
        rq[2 * j] = (int32_t)((uint32_t)share[j] + 2u * (uint32_t)table[4 * j]);
        rq[2 * j + 1] = table[4 * j + 1] >> 1;
    }
}

typedef struct {
    const int32_t *table, *share;
    int out_c, mulh, kind;
    int32_t lo, hi;
} wino16_out_t;

/* The C path (another table form or clamp, a tile pair cut by the image's edge; the form and the clamp at run
 * time): the outputs of channel pair (k, k + 1) of a tile pair from its sums m, `cols` (1 .. 4) output columns in
 * the image, out tile 0's first pixel at channel k. */
static void wino16_store(const wino16_out_t *o, const int32_t *m, int k, int16_t *out, int cols) {
    const int32_t *t = o->table + 4 * k, *share = o->share + k, lo = o->lo, hi = o->hi;
    const int mulh = o->mulh, kind = o->kind, out_c = o->out_c;
    int32_t a0, a1, b0, b1; /* channel k, channel k + 1 */
    WINO16_PAIR(0, a0, a1);
    WINO16_PAIR(1, b0, b1);
    tm_st32(out, tm_pack_s16(a0, b0));
    if (cols > 1) {
        tm_st32(out + out_c, tm_pack_s16(a1, b1));
    }
    if (cols > 2) {
        WINO16_PAIR(2, a0, a1);
        WINO16_PAIR(3, b0, b1);
        tm_st32(out + 2 * out_c, tm_pack_s16(a0, b0));
        if (cols > 3) {
            tm_st32(out + 3 * out_c, tm_pack_s16(a1, b1));
        }
    }
}

int tm_dsp_conv_2d_winograd16(const tm_conv_params_t *p, const int16_t *input, const int8_t *filter,
                              const void *bias, int16_t *output, const int32_t in_dims[4], const int32_t f_dims[4],
                              const int32_t out_dims[4]) {
    const tm_conv_dims_t d = {in_dims[0], in_dims[1], in_dims[2], in_dims[3], f_dims[1], f_dims[2], f_dims[3],
                              out_dims[1], out_dims[2], out_dims[3]};
    if (!p->winograd || !p->acc64 || !tm_dsp_winograd16_takes(p, &d) ||
        !tm_dsp_s16_channels_fit(p, filter, 9 * d.in_c, (const int64_t *)bias, d.out_c, 1, 31) ||
        !wino16_non_negative(input, d.batches * d.in_h * d.in_w * d.in_c)) {
        return 0;
    }
    int32_t v[WINO16_V_WORDS], m[WINO16_M_WORDS], pad[WINO16_PAD_WORDS], table[4 * WINO16_CHUNK];
    int32_t share[WINO16_CHUNK], rq[2 * WINO16_CHUNK];
    for (int i = 0; i < WINO16_PAD_WORDS; ++i) {
        pad[i] = 0;
    }
    wino16_ctx_t c = {.pad = (const int16_t *)(const void *)pad, .in_h = d.in_h, .in_w = d.in_w, .in_c = d.in_c,
                      .groups = d.in_c / 4};
    const int groups = 3 * c.groups;   /* per position */
    const int32_t u_words = 4 * 4 * groups; /* per channel pair */
    const int row_values = d.out_w * d.out_c;
    const int kind = tm_s16_clamp_kind(p->act_min, p->act_max);
    wino16_job_t job = {.v = v, .m = m, .pixel_bytes = 2 * d.out_c, .relu = kind == TM_S16_CLAMP_RELU};
    tm_dsp_wino_controls(v, 4, 4 * groups + 1, wino16_run_end, wino16_run_exit, groups); /* wino16_sums' */
    wino16_out_t o = {.table = table, .share = share, .out_c = d.out_c, .lo = p->act_min, .hi = p->act_max,
                      .kind = kind};
    for (int k0 = 0; k0 < d.out_c; k0 += WINO16_CHUNK) {
        const int n = d.out_c - k0 < WINO16_CHUNK ? d.out_c - k0 : WINO16_CHUNK;
        o.mulh = tm_dsp_s16_table(p, (const int64_t *)bias, k0, n, table);
        wino16_offset(p->winograd, c.groups, k0, n, share);
        const int fast = o.mulh && kind != TM_S16_CLAMP_RANGE; /* wino16_sums requantizes */
        if (fast) {
            wino16_rq(table, share, n, rq);
        }
        for (int bt = 0; bt < d.batches; ++bt) {
            c.in = input + bt * d.in_h * d.in_w * d.in_c;
            int16_t *out = output + bt * d.out_h * row_values;
            for (int ox = 0; ox < d.out_w; ox += 4) { /* down each column of tile pairs: V's rows move up */
                const int cols = d.out_w - ox < 4 ? d.out_w - ox : 4, x0 = ox - p->pad_w;
                for (int oy = 0; oy < d.out_h; ++oy) {
                    const int y0 = oy - p->pad_h;
                    if (oy == 0) {
                        wino16_input_row(&c, v, 0, y0, x0);
                        wino16_input_row(&c, v, 1, y0 + 1, x0);
                    } else {
                        wino16_next_row(&c, v);
                    }
                    wino16_input_row(&c, v, 2, y0 + 2, x0);
                    int16_t *px = out + oy * row_values + ox * d.out_c;
                    for (int k = k0; k < k0 + n; k += 2) {
                        job.u = (const int32_t *)(const void *)p->winograd + (k >> 1) * u_words;
                        if (fast && cols == 4) {
                            job.rq = rq + 2 * (k - k0), job.out = px + k;
                            wino16_sums(&job);
                            continue;
                        }
                        job.rq = 0;
                        wino16_sums(&job);
                        wino16_store(&o, m, k - k0, px + k, cols);
                    }
                }
            }
        }
    }
    return 1;
}

#endif /* TM_HAVE_DSP */
