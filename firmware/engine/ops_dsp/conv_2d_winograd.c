/*
 * CONV_2D, int8, 3x3 filter, stride 1, dilation 1: the Winograd F(2x2, 3x3) path of the DSP kernel
 * (conv_2d.c tries it first where the compiler has transformed the filter, p->winograd).
 *
 * A 2x2 block of outputs of one channel pair (tile) needs 36 multiplications per input channel done
 * directly and 16 in the Winograd domain (Lavin & Gray 2016): with d the 4x4 input patch of the tile (input
 * offset added, 0 outside the image) and g the 3x3 filter,
 *     Y = A^T [ (G g G^T) . (B^T d B) ] A      (. elementwise, summed over the input channels)
 *     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *     A^T = [1 1 1 0; 0 1 -1 -1]
 * Why the result is bit-identical to the portable kernel's int32 sum: the compiler stores U = (2G) g (2G)^T,
 * four times G g G^T and all integers (|U| <= 9 * 127 = 1143: int16); V = B^T d B adds or subtracts four
 * values of [-255, 255] (|V| <= 1020: int16).  Everything after is integer additions and products, done mod
 * 2^32 (SMLAD and ADD wrap); the identity holds over the integers, so the result is 4 * sum mod 2^32, and
 * since |4 * sum| <= 4 * 9 * 128 * 255 * 127 < 2^31 for in_c <= WINO_MAX_IN_C it is 4 * sum exactly: an
 * arithmetic shift right by 2 gives the sum, the bias and the requantization follow as everywhere else.
 *
 * Layout (int16 pairs, the SXTB16 order of dsp_common.h: a group of 4 channels is the words (c0, c2) and
 * (c1, c3)): for two horizontally neighbouring tiles, V is per position p = 4i + j (of the 4x4 domain) a control
 * word (where the products loop jumps: the run of the op's group count) and per group the words of tile 0 then
 * tile 1, and a last control word (out of the loop); the compiler's U (host/compiler/ops/conv.py, winograd_weights) is
 * per output-channel pair, per position, per group, the words of channel 0 then channel 1.  The products of
 * one tile pair and one channel pair over the 16 positions are the wide path's loop (TM_DSP_WIDE_GROUP_ASM:
 * 8 SMLAD per LDM of 4 V words and LDM of 4 U words, 18 cycles per 16 MACs) into 4 sums per position, pushed
 * (about 13 cycles per position besides the groups).  A^T M A, the requantization and the stores follow in the
 * same call where they can (wino_pair), else in C (wino_store).
 *
 * Scratch (stack): V of one tile pair, about 64 * in_c bytes, held at its largest (WINO_MAX_IN_C), the 16 x 4
 * sums, the requantization table of up to WINO_CHUNK channels: tm_dsp_conv_2d_winograd_scratch_bytes
 * (host/compiler/ops/conv.py computes the same).
 */
#include "dsp_conv.h"

#define WINO_MAX_IN_C 128
#define WINO_MAX_GROUPS (WINO_MAX_IN_C / 4)
#define WINO_V_WORDS (16 * (4 * WINO_MAX_GROUPS + 1) + 1) /* per position a control word, then the groups */
#define WINO_M_WORDS (16 * 4)
#define WINO_E_WORDS (48 + 24)  /* wino_input's first pass and pixel pointers */
#define WINO_PAD_WORDS WINO_MAX_GROUPS
#define WINO_CHUNK 64            /* output channels per requantization table */
#define WINO_TABLE_WORDS (4 * WINO_CHUNK)
#define WINO_PAIR_WORDS (2 + 64)  /* wino_pair's frame: the job and the 16 x 4 sums */
#define WINO_SCRATCH_WORDS \
    (WINO_V_WORDS + WINO_M_WORDS + WINO_PAD_WORDS + WINO_TABLE_WORDS + WINO_E_WORDS + WINO_PAIR_WORDS)

int tm_dsp_winograd_takes(const tm_conv_params_t *p, const tm_conv_dims_t *d) {
    return d->f_h == 3 && d->f_w == 3 && d->f_c == d->in_c && p->stride_h == 1 && p->stride_w == 1 &&
           p->dilation_h == 1 && p->dilation_w == 1 && d->in_c % 4 == 0 && d->in_c >= 4 &&
           d->in_c <= WINO_MAX_IN_C && d->out_c % 2 == 0 && d->out_c >= 2 && d->out_h >= 2 && d->out_w >= 2;
}

int32_t tm_dsp_conv_2d_winograd_scratch_bytes(const tm_conv_params_t *p, const tm_conv_dims_t *d) {
    return tm_dsp_winograd_takes(p, d) ? WINO_SCRATCH_WORDS * (int32_t)sizeof(int32_t) : 0;
}

#if TM_HAVE_DSP
#include "dsp_common.h"

#define WINO_STR(x) #x
#define WINO_XSTR(x) WINO_STR(x)

/* Work of wino_pair (read by the assembly: keep the field offsets). */
typedef struct {
    const int32_t *v;     /* +0  the tile pair's transformed input, with its control words (wino_input) */
    const int32_t *u;     /* +4  the channel pair's transformed filter */
    int32_t *m;           /* +8  without a table: where the 16 x 4 sums go, for wino_store */
    const int32_t *table; /* +12 per channel of the pair M, c, r (tm_dsp_wide_rq) and 2 * bias; or NULL */
    int8_t *out;          /* +16 output of tile 0, channel 0 */
    int32_t out_c;        /* +20 */
    int32_t row_bytes;    /* +24 */
} wino_job_t;

/* Row I of the sums of combination Q (A^T's two sums along j): r_a = m_i0 + m_i1 + m_i2, r_b = m_i1 - m_i2 - m_i3.
 * The sums of position p are at sp + 16 (15 - p) + 4 Q (pushed in order, the stack growing down). */
#define WINO_M(Q, I, J) "[sp, #(16 * (15 - 4 * " #I " - " #J ") + 4 * " #Q ")]"
#define WINO_ROW(Q, I, RA, RB)                       \
    "ldr     r9, " WINO_M(Q, I, 0) "\n"              \
    "ldr     r10, " WINO_M(Q, I, 1) "\n"             \
    "ldr     r11, " WINO_M(Q, I, 2) "\n"             \
    "ldr     r12, " WINO_M(Q, I, 3) "\n"             \
    "add     " RA ", r9, r10\n"                      \
    "add     " RA ", " RA ", r11\n"                  \
    "sub     " RB ", r10, r11\n"                     \
    "sub     " RB ", " RB ", r12\n"

/* 2 acc = y / 2 + 2 bias (y = 4 sum, exactly), SMMLAR by M onto c (rounding and output offset) less the sign
 * (r12), ASR r, SSAT #8: conv_2d_wide.c's requantization; r3-r6 the channel's M, c, r, 2 bias. */
#define WINO_RQ(X)                           \
    "add     " X ", r6, " X ", asr #1\n"     \
    "sub     r12, r4, " X ", lsr #31\n"      \
    "smmlar  " X ", " X ", r3, r12\n"        \
    "asr     " X ", " X ", r5\n"             \
    "ssat    " X ", #8, " X "\n"

/* Combination Q = 2 t + ch: A^T M A (4 outputs), requantized, stored at out + 2 t out_c + ch (2 x 2 pixels);
 * r0 the job; TILE moves r11 to tile t's first pixel (r12 = out_c). */
#define WINO_TILE1 "add     r11, r11, r12, lsl #1\n"
#define WINO_OUT(Q, CH, TILE)                                \
    WINO_ROW(Q, 0, "r1", "r2")                               \
    WINO_ROW(Q, 1, "r3", "r4")                               \
    WINO_ROW(Q, 2, "r5", "r6")                               \
    WINO_ROW(Q, 3, "r7", "r8")                               \
    "sub     r9, r3, r5\n"  /* y10 */                        \
    "sub     r9, r9, r7\n"                                   \
    "add     r1, r1, r3\n"  /* y00 */                        \
    "add     r1, r1, r5\n"                                   \
    "sub     r10, r4, r6\n" /* y11 */                        \
    "sub     r10, r10, r8\n"                                 \
    "add     r2, r2, r4\n"  /* y01 */                        \
    "add     r2, r2, r6\n"                                   \
    "ldr     r11, [r0, #12]\n"                               \
    "add     r11, r11, #(16 * " #CH ")\n"                    \
    "ldm     r11, {r3-r6}\n"                                 \
    WINO_RQ("r1") WINO_RQ("r2") WINO_RQ("r9") WINO_RQ("r10") \
    "ldr     r11, [r0, #16]\n"                               \
    "ldr     r12, [r0, #20]\n"                               \
    "ldr     r7, [r0, #24]\n"                                \
    TILE                                                     \
    "add     r11, r11, #" #CH "\n"                           \
    "strb    r1, [r11]\n"                                    \
    "strb    r2, [r11, r12]\n"                               \
    "strb    r9, [r11, r7]\n"                                \
    "add     r11, r11, r7\n"                                 \
    "strb    r10, [r11, r12]\n"

/*
 * A tile pair and a channel pair whole.  The sums of the 16 positions: the Winograd paths' loop
 * (TM_DSP_WINO_SUMS_ASM, dsp_conv.h) over runs of up to WINO_MAX_GROUPS groups, to wino_run_exit.  Then, with a
 * table, per combination
 * A^T M A, the requantization and the stores; without one (another activation range, a channel tm_dsp_wide_rq
 * does not take, a tile pair cut by the image's edge) the sums are copied to job->m for wino_store.
 */
__attribute__((naked)) static void wino_pair(const wino_job_t *job __attribute__((unused))) {
    __asm__ volatile(
        TM_DSP_WINO_SUMS_ASM(WINO_XSTR(WINO_MAX_GROUPS), "wino_run_end", "wino_run_exit")
        "ldr     r0, [sp, #256]\n"
        "ldr     r1, [r0, #12]\n"
        "cmp     r1, #0\n"
        "beq.w   7f\n"
        WINO_OUT(0, 0, "")
        WINO_OUT(1, 1, "")
        WINO_OUT(2, 0, WINO_TILE1)
        WINO_OUT(3, 1, WINO_TILE1)
        "6:\n"
        "add     sp, sp, #(256 + 8)\n"
        "pop     {r4-r11, pc}\n"
        "7:\n" /* the sums in position order to job->m */
        "ldr     r1, [r0, #8]\n"
        "add     r1, r1, #256\n"
        "mov     r2, sp\n"
        "8:\n"
        "ldm     r2!, {r3-r6}\n"
        "stmdb   r1!, {r3-r6}\n"
        "ldr     r0, [sp, #256]\n"
        "ldr     r0, [r0, #8]\n"
        "cmp     r1, r0\n"
        "bne     8b\n"
        "b       6b\n");
}

/* Labels in wino_pair that its control words point to (plain labels: the Thumb bit is added where they are used). */
extern const char wino_run_end[], wino_run_exit[];

typedef struct {
    const int8_t *in;  /* this batch */
    const int8_t *pad; /* in_c bytes of the input zero point: widened with the offset, 0 (the padding) */
    int in_h, in_w, in_c, groups;
    int32_t off2;
} wino_ctx_t;

/*
 * V of the tile pair whose patch starts at input (y0, x0), group by group in two passes through e (48 words):
 * B^T down each of the 6 columns, e[j * 8 + 2 i + lane] (lane 0: words (c0, c2), 1: (c1, c3); a column's 8 words
 * written together), then B along the rows, 6 words of e giving 4 positions of each tile.  A pixel outside
 * the image is read from c->pad, so no tap is tested.
 */
static void wino_input(const wino_ctx_t *c, int32_t *v, int y0, int x0) {
    const int8_t *px[6][4];
    for (int j = 0; j < 6; ++j) {
        const int x = x0 + j;
        for (int r = 0; r < 4; ++r) {
            const int y = y0 + r;
            const int inside = (unsigned)y < (unsigned)c->in_h && (unsigned)x < (unsigned)c->in_w;
            px[j][r] = inside ? c->in + (y * c->in_w + x) * c->in_c : c->pad;
        }
    }
    const int stride = 4 * c->groups + 1; /* words from position p to p + 1 */
    const int32_t off2 = c->off2;
    int32_t e[48] __attribute__((aligned(8)));
    for (int g4 = 0; g4 < 4 * c->groups; g4 += 4) {
        for (int j = 0; j < 6; ++j) {
            const uint32_t w0 = tm_ld32(px[j][0] + g4), w1 = tm_ld32(px[j][1] + g4);
            const uint32_t w2 = tm_ld32(px[j][2] + g4), w3 = tm_ld32(px[j][3] + g4);
            const int32_t d1l = __sxtab16(off2, w1), d2l = __sxtab16(off2, w2);
            const int32_t d1h = tm_sxtab16_ror8(off2, w1), d2h = tm_sxtab16_ror8(off2, w2);
            int32_t *ej = e + 8 * j;
            ej[0] = __ssub16(__sxtab16(off2, w0), d2l); /* d0 - d2 */
            ej[1] = __ssub16(tm_sxtab16_ror8(off2, w0), d2h);
            ej[2] = __sadd16(d1l, d2l); /* d1 + d2 */
            ej[3] = __sadd16(d1h, d2h);
            ej[4] = __ssub16(d2l, d1l); /* d2 - d1 */
            ej[5] = __ssub16(d2h, d1h);
            ej[6] = __ssub16(d1l, __sxtab16(off2, w3)); /* d1 - d3 */
            ej[7] = __ssub16(d1h, tm_sxtab16_ror8(off2, w3));
        }
        int32_t *og = v + 1 + g4; /* row i, lane: positions 4i .. 4i + 3, after their control words */
        const int32_t *s = e;
        for (int il = 0; il < 8; ++il, ++s, og += (il & 1) ? 1 : 4 * stride - 1) {
            const int32_t s0 = s[0], s1 = s[8], s2 = s[16], s3 = s[24], s4 = s[32], s5 = s[40];
            og[0] = __ssub16(s0, s2), og[stride] = __sadd16(s1, s2);
            og[2 * stride] = __ssub16(s2, s1), og[3 * stride] = __ssub16(s1, s3);
            og[2] = __ssub16(s2, s4), og[stride + 2] = __sadd16(s3, s4);
            og[2 * stride + 2] = __ssub16(s4, s3), og[3 * stride + 2] = __ssub16(s3, s5);
        }
    }
}

/* A^T M A of sums q (0 .. 3) of the 16 positions: the tile's 2x2 outputs, times 4. */
static inline __attribute__((always_inline)) void wino_output(const int32_t *m, int q, int32_t y[4]) {
    int32_t s0[4], s1[4];
    for (int j = 0; j < 4; ++j) {
        const int32_t m0 = m[j * 4 + q], m1 = m[(4 + j) * 4 + q], m2 = m[(8 + j) * 4 + q], m3 = m[(12 + j) * 4 + q];
        s0[j] = m0 + m1 + m2;
        s1[j] = m1 - m2 - m3;
    }
    y[0] = s0[0] + s0[1] + s0[2], y[1] = s0[1] - s0[2] - s0[3];
    y[2] = s1[0] + s1[1] + s1[2], y[3] = s1[1] - s1[2] - s1[3];
}

typedef struct {
    tm_dsp_rq_t rq;
    int32_t bias;
} wino_channel_t;

static inline int8_t wino_out_s8(const tm_conv_params_t *p, const wino_channel_t *ch, int32_t y4) {
    return (int8_t)tm_clamp_i32(tm_dsp_rq_apply(&ch->rq, (y4 >> 2) + ch->bias) + p->output_offset, p->act_min,
                                p->act_max);
}

/* The outputs of the channel pair (k, k + 1) of a tile pair from its 16 x 4 sums: tile t's at out + 2t pixels;
 * `rows` (1 or 2) output rows and `cols` (1 .. 4) output columns are in the image.  Not inlined: the rare path,
 * kept out of the loop's code. */
__attribute__((noinline)) static void wino_store(const tm_conv_params_t *p, const int32_t *m,
                                                  const wino_channel_t ch[2], int8_t *out, int row_bytes, int out_c,
                                                  int rows, int cols) {
    for (int q = 0; q < 4; ++q) {
        const int t = q >> 1, k = q & 1;
        int32_t y[4];
        wino_output(m, q, y);
        int8_t *o = out + 2 * t * out_c + k;
        for (int r = 0; r < 4; ++r) {
            const int yy = r >> 1, xx = 2 * t + (r & 1);
            if (yy < rows && xx < cols) {
                o[yy * row_bytes + (r & 1) * out_c] = wino_out_s8(p, &ch[k], y[r]);
            }
        }
    }
}

/* Channels k0 .. k0 + n - 1's table words (M, c, r, 2 bias) for wino_pair into t: 0 when one of them needs
 * wino_store. */
static int wino_table(const tm_conv_params_t *p, const int8_t *filter, const int32_t *bias, int taps, int k0, int n,
                      int32_t *t) {
    if (p->act_min != -128 || p->act_max != 127) {
        return 0;
    }
    for (int k = k0; k < k0 + n; ++k, t += 4) {
        if (tm_dsp_wide_rq(p, filter + k * taps, taps, 1, bias, k, t) == TM_DSP_WIDE_UNSUPPORTED) {
            return 0;
        }
        t[3] = 2 * (bias ? bias[k] : 0);
    }
    return 1;
}

int tm_dsp_conv_2d_winograd(const tm_conv_params_t *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                            int8_t *output, const int32_t in_dims[4], const int32_t f_dims[4],
                            const int32_t out_dims[4]) {
    const tm_conv_dims_t d = {in_dims[0], in_dims[1], in_dims[2], in_dims[3], f_dims[1], f_dims[2], f_dims[3],
                              out_dims[1], out_dims[2], out_dims[3]};
    if (!p->winograd || !tm_dsp_winograd_takes(p, &d)) {
        return 0;
    }
    int32_t v[WINO_V_WORDS], m[WINO_M_WORDS], pad[WINO_PAD_WORDS], table[WINO_TABLE_WORDS];
    const uint32_t zp = (uint8_t)(int8_t)(-p->input_offset);
    for (int g = 0; g < WINO_PAD_WORDS; ++g) {
        pad[g] = (int32_t)(zp * 0x01010101u);
    }
    wino_ctx_t c = {.pad = (const int8_t *)pad, .in_h = d.in_h, .in_w = d.in_w, .in_c = d.in_c,
                    .groups = d.in_c / 4, .off2 = tm_pack_offset(p->input_offset)};
    const int32_t u_words = 16 * c.groups * 4; /* per channel pair */
    const int row_bytes = d.out_w * d.out_c;
    wino_job_t job = {.v = v, .m = m, .out_c = d.out_c, .row_bytes = row_bytes};
    tm_dsp_wino_controls(v, 16, 4 * c.groups + 1, wino_run_end, wino_run_exit, c.groups); /* wino_pair's */
    for (int k0 = 0; k0 < d.out_c; k0 += WINO_CHUNK) {
        const int n = d.out_c - k0 < WINO_CHUNK ? d.out_c - k0 : WINO_CHUNK;
        const int fast = wino_table(p, filter, bias, 9 * d.in_c, k0, n, table);
        for (int bt = 0; bt < d.batches; ++bt) {
            c.in = input + bt * d.in_h * d.in_w * d.in_c;
            int8_t *out = output + bt * d.out_h * row_bytes;
            for (int oy = 0; oy < d.out_h; oy += 2) {
                const int rows = d.out_h - oy < 2 ? d.out_h - oy : 2;
                for (int ox = 0; ox < d.out_w; ox += 4) {
                    const int cols = d.out_w - ox < 4 ? d.out_w - ox : 4;
                    wino_input(&c, v, oy - p->pad_h, ox - p->pad_w);
                    int8_t *o = out + oy * row_bytes + ox * d.out_c;
                    for (int k = k0; k < k0 + n; k += 2) {
                        job.u = (const int32_t *)(const void *)p->winograd + (k >> 1) * u_words;
                        if (fast && rows == 2 && cols == 4) {
                            job.table = table + 4 * (k - k0), job.out = o + k;
                            wino_pair(&job);
                            continue;
                        }
                        job.table = 0;
                        wino_pair(&job);
                        const wino_channel_t ch[2] = {
                            {tm_dsp_rq_of(p->out_multiplier[k], p->out_shift[k]), bias ? bias[k] : 0},
                            {tm_dsp_rq_of(p->out_multiplier[k + 1], p->out_shift[k + 1]), bias ? bias[k + 1] : 0}};
                        wino_store(p, m, ch, o + k, row_bytes, d.out_c, rows, cols);
                    }
                }
            }
        }
    }
    return 1;
}

#endif /* TM_HAVE_DSP */
