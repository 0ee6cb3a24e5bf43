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
 * taps padded with zero weights) and doubled, fit WIDE_WEIGHT_BYTES on the stack; where the compiler has
 * widened them already (p->weights16 with weights16_doubled, host/compiler/ops/conv.py: the same layout
 * for all channels, in flash where TM_CONV_WEIGHTS16 is set), a chunk's are read from there.  For each
 * chunk, each triple of output pixels is put into a column buffer (int16, input offset added,
 * out-of-image and padding taps 0); then one assembly call does all channel pairs of the chunk, three
 * pixels by two channels: per 2 taps one LDM of the three pixels' words, one LDM of the two channels'
 * and 6 SMLAD (8 instructions, 13 estimated M4 cycles, per 12 MACs; two pixels by two channels took 18
 * per 16; three by two is the largest block whose sums, a tap pair's operands, two pointers and the
 * table pointer fit the 14 registers; two pixels by four channels with the weights loaded in two halves
 * would fit without the table pointer, at 17 per 16: about 0.13 M cycles less on VWW, not done), fully
 * unrolled: the call jumps into a run of WIDE_MAX_GROUPS groups at the op's group count, so there is no
 * loop counter.  The requantization follows in the same call, with the sums still
 * in registers, 4 instructions per output and a store per two outputs:
 *   SRDHM(acc, M) = floor((acc * M + 2^30) / 2^31) = floor((2 acc * M + 2^31) / 2^32) = SMMULR(2 acc, M)
 * (exact while 2 acc fits int32, hence the bound on the sums), then the rounding right shift by r, ties
 * away from zero, floor((x + 2^(r-1) - [x < 0]) / 2^r), with the output offset o folded in as o * 2^r
 * (|x| < 2^30, |o * 2^r| < 2^27: no overflow), and SSAT #8 as the clamp.  The sign [x < 0] may be taken
 * from the sum instead, [acc < 0]: with M >= 0 they differ only when x = 0 > acc, where both give
 * floor((c - 1) / 2^r) = floor(c / 2^r) = o, c = 2^(r-1) + o 2^r, r >= 1 (a constant channel's c = 2 v + 1,
 * r = 1, gives v either way).  So SMMLAR(2 acc, M, c - [acc < 0]) = x + c - [acc < 0] in one instruction
 * after one SUB (tm_dsp_wide_rq's words serve both forms).
 *
 * Scratch (stack, while a CONV_2D runs): widened weights and columns, the requantization table of up to
 * WIDE_MAX_CHUNK channels and, for in_c % 4 != 0, the staging of one pixel's taps; the bytes are
 * tm_dsp_conv_2d_wide_scratch_bytes (the compiler's figure, host/compiler/ops/conv.py).
 */
#include "dsp_conv.h"

#define WIDE_MAX_TAPS 256 /* taps per pixel, rounded up to a multiple of 4 */
#define WIDE_MAX_GROUPS (WIDE_MAX_TAPS / 4)
#define WIDE_WEIGHT_BYTES 9216
#define WIDE_SCRATCH_BYTES 10752 /* widened weights + the columns of a pixel triple (6 * WIDE_MAX_TAPS) */
#define WIDE_MAX_CHUNK 64 /* output channels per chunk (table) */
#define WIDE_TABLE_WORDS (6 + 12 * (WIDE_MAX_CHUNK / 2)) /* see wide_triples' table */
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
    const int cols_bytes = ((pixels + 2) / 3) * 6 * (kp);                                                 \
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

/* Work of wide_triples (read by the assembly: keep the field offsets). */
typedef struct {
    const int16_t *buf;   /* +0  the three pixels' taps, per group of 4 WIDE_GROUP_WORDS words (wide_slot) */
    const int32_t *w;     /* +4  the chunk's widened doubled weights (per pair, per group: ch0 lo, ch1 lo, ch0 hi, ch1 hi) */
    const int32_t *table; /* +8  the first pair's doubled biases (b0 x 3, b1 x 3), then per pair 12 words */
    int8_t *out0;         /* +12 the first pixel's output of the chunk's first channel */
    int32_t d1, d2;       /* +16 +20 bytes from there to the second and the third pixel's */
    int8_t *out0_end;     /* +24 out0 + channels of the chunk */
    int32_t groups;       /* +28 groups of 4 taps (1 .. WIDE_MAX_GROUPS) */
} wide_job_t;

/* The column words of a pixel triple: per group of 4 taps, the three pixels' low words (SXTB16's taps 0, 2),
 * then their high words (taps 1, 3); pixel col's low word of group g, its high word WIDE_HI words on. */
#define WIDE_GROUP_WORDS 6
#define WIDE_HI 3
static inline uint32_t *wide_slot(int16_t *buf, int g, int col) {
    return (uint32_t *)(void *)buf + WIDE_GROUP_WORDS * g + col;
}

/* Half a group (2 taps): the three pixels' words into r8-r10, the two channels' into r11, r12, 6 SMLAD into
 * r2-r4 (channel 0 of pixels 0-2) and r5-r7 (channel 1): 8 instructions, 32 bytes. */
#define WIDE_HALF_ASM                      \
    "ldmia.w r0!, {r8-r10}\n"              \
    "ldmia.w r1!, {r11, r12}\n"            \
    "smlad   r2, r8, r11, r2\n"            \
    "smlad   r3, r9, r11, r3\n"            \
    "smlad   r4, r10, r11, r4\n"           \
    "smlad   r5, r8, r12, r5\n"            \
    "smlad   r6, r9, r12, r6\n"            \
    "smlad   r7, r10, r12, r7\n"

#define WIDE_RUN_BYTES 4096 /* WIDE_MAX_GROUPS groups of two WIDE_HALF_ASM */
_Static_assert(WIDE_RUN_BYTES == WIDE_MAX_GROUPS * 64, "wide_triples' run");

/* 2 acc (the weights are doubled): SMMLAR by M onto c less the sign (r11), rounding right shift by s with the
 * offset folded into c, SSAT #8 */
#define WIDE_RQ(A, M, C, S)                   \
    "sub     r11, " C ", " A ", lsr #31\n"    \
    "smmlar  " A ", " A ", " M ", r11\n"      \
    "asr     " A ", " A ", " S "\n"           \
    "ssat    " A ", #8, " A "\n"

/*
 * Table: words 0..5 the first pair's biases; then per pair M0, c0, r0, M1, c1, r1 and the next pair's six
 * biases (zeros after the last).  Registers in the unrolled MAC: r0 taps, r1 weights, r2-r7 sums, r8-r10
 * taps, r11 r12 weights, lr the table (the one register the MAC leaves free: the tail reads the table
 * without a load of its pointer and a store of it back).  Stack: [sp] buf, +4 out0, +8 d1, +12 d2,
 * +16 out0_end, +20 entry, read by one LDM per pair.  Each pixel's two channels are one halfword (even
 * offsets); a repeated last pixel (d1 or d2 the previous one's) stores the same bytes again.
 */
__attribute__((naked)) static void wide_triples(const wide_job_t *job __attribute__((unused))) {
    __asm__ volatile(
        "push    {r4-r11, lr}\n"
        "sub     sp, sp, #28\n" /* 6 words and a pad: sp stays 8-byte aligned */
        "ldm     r0, {r1-r8}\n"
        "adr.w   r9, 8f\n" /* the run's end (beyond ADR's reach): its start + 64 bytes per group */
        "add.w   r9, r9, #" WIDE_XSTR(WIDE_RUN_BYTES) "\n"
        "sub     r9, r9, r8, lsl #6\n"
        "orr     r9, r9, #1\n"
        "stm     sp, {r1, r4, r5, r6, r7, r9}\n"
        "mov     lr, r3\n"
        "mov     r0, r1\n"
        "mov     r1, r2\n"
        "ldmia   lr!, {r2-r7}\n"
        "bx      r9\n"
        "8:\n"
        ".rept " WIDE_XSTR(WIDE_MAX_GROUPS) "\n"
        WIDE_HALF_ASM
        WIDE_HALF_ASM
        ".endr\n"
        "9:\n"
        "ldmia   lr!, {r8-r10}\n"
        WIDE_RQ("r2", "r8", "r9", "r10")
        WIDE_RQ("r3", "r8", "r9", "r10")
        WIDE_RQ("r4", "r8", "r9", "r10")
        "ldmia   lr!, {r8-r10}\n"
        WIDE_RQ("r5", "r8", "r9", "r10")
        WIDE_RQ("r6", "r8", "r9", "r10")
        WIDE_RQ("r7", "r8", "r9", "r10")
        "bfi     r2, r5, #8, #8\n"
        "bfi     r3, r6, #8, #8\n"
        "bfi     r4, r7, #8, #8\n"
        "ldm     sp, {r0, r8-r12}\n" /* buf, out0, d1, d2, out0_end, entry */
        "strh    r3, [r8, r9]\n"
        "strh    r4, [r8, r10]\n"
        "strh    r2, [r8], #2\n"
        "ldmia   lr!, {r2-r7}\n"
        "str     r8, [sp, #4]\n"
        "cmp     r8, r11\n"
        "it      ne\n"
        "bxne    r12\n"
        "add     sp, sp, #28\n"
        "pop     {r4-r11, pc}\n");
}

typedef struct {
    const tm_conv_params_t *p;
    const int8_t *input, *input_end; /* this batch */
    int in_h, in_w, in_c, f_h, f_w, out_w;
    int k, kp;           /* taps per pixel, rounded up to a multiple of 4 */
    int pointwise;       /* 1x1, stride 1, no padding: pixel i's taps are input + i * in_c */
    int rgb3;            /* 3x3 over 3 input channels, dilation 1 */
    int32_t off2;
    const int8_t *plane; /* in_c % 4 != 0: the padded input (see build_plane), or NULL */
    int plane_w;         /* its pixels per row */
} wide_ctx_t;

/* n bytes (a multiple of 4) at src widened into the slots of pixel `col` from group g. */
static inline void widen_words(int16_t *buf, const int8_t *src, int n, int g, int col, int32_t off2) {
    uint32_t *dst = wide_slot(buf, g, col);
    for (int i = 0; i < n; i += 4, dst += WIDE_GROUP_WORDS) {
        const uint32_t x = tm_ld32(src + i);
        dst[0] = (uint32_t)__sxtab16(off2, x);
        dst[WIDE_HI] = (uint32_t)tm_sxtab16_ror8(off2, x);
    }
}

static inline void zero_words(int16_t *buf, int n, int g, int col) {
    uint32_t *dst = wide_slot(buf, g, col);
    for (int i = 0; i < n; i += 4, dst += WIDE_GROUP_WORDS) {
        dst[0] = 0, dst[WIDE_HI] = 0;
    }
}

/*
 * in_c % 4 != 0 (KWS's first layer: one channel, a 10 x 4 filter): the input of the batch with its padding
 * laid out once, the out-of-image pixels the input zero point, so that every filter row of every output
 * pixel is one run of f_w * in_c bytes read by words without bounds checks (the per-tap checks took about
 * 1,800 cycles per pixel there).  Rows of plane_w pixels; 4 bytes more for the last word's over-read.
 */
static int32_t plane_bytes(const tm_conv_params_t *p, const int32_t f_dims[4], const int32_t out_dims[4], int in_c,
                           int *plane_w) {
    const int rows = (out_dims[1] - 1) * p->stride_h + (f_dims[1] - 1) * p->dilation_h + 1;
    *plane_w = (out_dims[2] - 1) * p->stride_w + f_dims[2];
    return (int32_t)rows * *plane_w * in_c + 4;
}

static void build_plane(const wide_ctx_t *c, int8_t *plane, int32_t bytes) {
    const tm_conv_params_t *p = c->p;
    const int row_bytes = c->plane_w * c->in_c, rows = (bytes - 4) / row_bytes;
    memset(plane, (int8_t)(-p->input_offset), (size_t)bytes);
    const int x_end = c->plane_w - p->pad_w < c->in_w ? c->plane_w - p->pad_w : c->in_w; /* input columns kept */
    for (int py = p->pad_h; x_end > 0 && py < rows && py - p->pad_h < c->in_h; ++py) {
        memcpy(plane + py * row_bytes + p->pad_w * c->in_c, c->input + (py - p->pad_h) * c->in_w * c->in_c,
               (size_t)(x_end * c->in_c));
    }
}

/* The taps of the output pixel at plane row py, column px from the plane (in_c % 4 != 0, dilation_w 1), when a
 * filter row is not whole groups (those take plane_triple): staged as int8, then widened. */
static void plane_fill(const wide_ctx_t *c, int16_t *buf, int8_t *stage, int py, int px, int col) {
    const tm_conv_params_t *p = c->p;
    const int run = c->f_w * c->in_c, row_bytes = c->plane_w * c->in_c;
    const int8_t *row = c->plane + py * row_bytes + px * c->in_c;
    int8_t *d = stage;
    for (int fy = 0; fy < c->f_h; ++fy, d += run, row += p->dilation_h * row_bytes) {
        for (int i = 0; i < run; i += 4) { /* the last word past the run: overwritten, or padding below */
            tm_st32(d + i, tm_ld32(row + i));
        }
    }
    const int8_t zp = (int8_t)(-p->input_offset);
    for (int i = c->k; i < c->kp; ++i) {
        stage[i] = zp;
    }
    widen_words(buf, stage, c->kp, 0, col, c->off2);
}

/*
 * 3x3 over 3 channels, the window at r0 in the image (rows row3 bytes apart): rows of 9 bytes into 7 words (the
 * 28th tap is the zero point, which adds 0), by unaligned loads and shifts within each row, widened into column
 * `col` (dst = its first word).  Written out with the offset in a local: an array of the words and a loop went
 * through the stack, and the stores through the column made gcc reload the offset for each (90 cycles a pixel).
 */
static inline void rgb3_column(uint32_t *dst, const int8_t *r0, int row3, int32_t off2, uint32_t zp) {
    const int8_t *r1 = r0 + row3, *r2 = r1 + row3;
    uint16_t h;
    memcpy(&h, r1 + 7, sizeof h);
#define WIDE_RGB3_WORD(I, X)                                                                                  \
    do {                                                                                                      \
        const uint32_t x_ = (X);                                                                              \
        dst[WIDE_GROUP_WORDS * (I)] = (uint32_t)__sxtab16(off2, x_);                                          \
        dst[WIDE_GROUP_WORDS * (I) + WIDE_HI] = (uint32_t)tm_sxtab16_ror8(off2, x_);                          \
    } while (0)
    WIDE_RGB3_WORD(0, tm_ld32(r0));
    WIDE_RGB3_WORD(1, tm_ld32(r0 + 4));
    WIDE_RGB3_WORD(2, (uint8_t)r0[8] | (tm_ld32(r1) << 8));
    WIDE_RGB3_WORD(3, tm_ld32(r1 + 3));
    WIDE_RGB3_WORD(4, h | (tm_ld32(r2) << 16));
    WIDE_RGB3_WORD(5, tm_ld32(r2 + 2));
    WIDE_RGB3_WORD(6, (tm_ld32(r2 + 5) >> 8) | (zp << 24));
#undef WIDE_RGB3_WORD
}

/* The taps of output pixel `pix` into column `col` (kp of them: the padding taps are 0); not 1x1 layers
 * (fill_triple's), nor the 3x3 RGB windows inside the image (rgb3_column). */
static void wide_fill(const wide_ctx_t *c, int16_t *buf, int pix, int col) {
    const tm_conv_params_t *p = c->p;
    const int oy = pix / c->out_w, ox = pix - oy * c->out_w;
    const int y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    const int whole_rows = p->dilation_w == 1 && x0 >= 0 && x0 + c->f_w <= c->in_w;
    const int run = c->f_w * c->in_c;
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
    if (c->plane) {
        plane_fill(c, buf, stage, oy * p->stride_h, ox * p->stride_w, col);
        return;
    }
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

/* Channels f0 and f1's words of one group (a and b: 4 int8 taps each), widened and doubled (|2 w| <= 256: still
 * int16), in wide_triples' order: ch0 lo, ch1 lo, ch0 hi, ch1 hi. */
static inline void widen_group(uint32_t a, uint32_t b, int32_t *w) {
    const int32_t a_lo = __sxtb16(a), b_lo = __sxtb16(b), a_hi = tm_sxtb16_ror8(a), b_hi = tm_sxtb16_ror8(b);
    w[0] = __sadd16(a_lo, a_lo), w[1] = __sadd16(b_lo, b_lo);
    w[2] = __sadd16(a_hi, a_hi), w[3] = __sadd16(b_hi, b_hi);
}

/* Widened doubled weights of channels [oc0, oc0 + n) (n even), per pair and group (widen_group). */
static void widen_weights(const int8_t *filter, int k, int kp, int oc0, int n, int32_t *w) {
    const int full = k >> 2;
    for (int j = 0; j < n; j += 2) {
        const int8_t *f0 = filter + (oc0 + j) * k, *f1 = f0 + k;
        int g = 0;
        for (; g < full; ++g, w += 4) {
            widen_group(tm_ld32(f0 + 4 * g), tm_ld32(f1 + 4 * g), w);
        }
        if (g < (kp >> 2)) {
            int8_t ta[4] = {0, 0, 0, 0}, tb[4] = {0, 0, 0, 0};
            for (int i = 4 * g; i < k; ++i) {
                ta[i - 4 * g] = f0[i], tb[i - 4 * g] = f1[i];
            }
            widen_group(tm_ld32(ta), tm_ld32(tb), w);
            w += 4;
        }
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
            t[0] = 0, t[1] = 2 * v + 1, t[2] = 1; /* v whether the sign taken is 0 or 1 */
        }
        return WIDE_CONSTANT;
    }
    return WIDE_UNSUPPORTED;
}

/*
 * How channel oc requantizes (and its table words M, c, r when t is given; its weights are w[i * w_stride]).  The sums lie in
 * [bias - B, bias + B] with B = K * 255 * 128, and the requantization (TFLite's, tm_fixedpoint.h) is
 * monotone in the sum for a right shift and a non-negative multiplier: when both ends give the same
 * output the channel is a constant (M = 0, c = 2 v + 1, r = 1).  That covers multipliers of 0 and the
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

/* One group of 4 taps of three pixels (the words at s0, s1, s2) widened into its 6 column words at dst. */
static inline void widen_group3(uint32_t *dst, const int8_t *s0, const int8_t *s1, const int8_t *s2, int32_t off2) {
    const uint32_t x0 = tm_ld32(s0), x1 = tm_ld32(s1), x2 = tm_ld32(s2);
    dst[0] = (uint32_t)__sxtab16(off2, x0), dst[1] = (uint32_t)__sxtab16(off2, x1);
    dst[2] = (uint32_t)__sxtab16(off2, x2), dst[3] = (uint32_t)tm_sxtab16_ror8(off2, x0);
    dst[4] = (uint32_t)tm_sxtab16_ror8(off2, x1), dst[5] = (uint32_t)tm_sxtab16_ror8(off2, x2);
}

/* The three pixels' words of one group (r4-r6, as loaded) widened with the offset pair OFF2, the high halves (taps
 * 1, 3) first into r7-r9 so that the low ones can replace their sources, and stored by one STM at D: the group's
 * 6 column words (7 cycles where six STR took 12).  pointwise_columns' and rgb3_triple_s2's. */
#define WIDEN3_STM_ASM(OFF2, D)                \
    "sxtab16 r7, " OFF2 ", r4, ror #8\n"       \
    "sxtab16 r8, " OFF2 ", r5, ror #8\n"       \
    "sxtab16 r9, " OFF2 ", r6, ror #8\n"       \
    "sxtab16 r4, " OFF2 ", r4\n"               \
    "sxtab16 r5, " OFF2 ", r5\n"               \
    "sxtab16 r6, " OFF2 ", r6\n"               \
    "stmia   " D "!, {r4-r9}\n"

/* One group of 4 taps of three pixels for pointwise_columns: the three words loaded back to back. */
#define PW_GROUP3_ASM                          \
    "ldr     r4, [%[s0]], #4\n"                \
    "ldr     r5, [%[s1]], #4\n"                \
    "ldr     r6, [%[s2]], #4\n"                \
    WIDEN3_STM_ASM("%[off2]", "%[d]")

/* `groups` (>= 1) groups of the word-aligned taps at s0, s1, s2 into the column words from d on, two groups per
 * pass of the loop (an odd count enters at the second copy). */
static void pointwise_columns(uint32_t *d, const int8_t *s0, const int8_t *s1, const int8_t *s2, int groups,
                              int32_t off2) {
    __asm__ volatile(
        "tst     %[n], #1\n"
        "itt     ne\n"
        "addne   %[n], %[n], #1\n"
        "bne     2f\n"
        "1:\n"
        PW_GROUP3_ASM
        "2:\n"
        PW_GROUP3_ASM
        "subs    %[n], %[n], #2\n"
        "bne     1b\n"
        : [d] "+r"(d), [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2), [n] "+r"(groups)
        : [off2] "r"(off2)
        : "r4", "r5", "r6", "r7", "r8", "r9", "cc", "memory");
}

/* The taps of pixels p0, p1, p2 from the plane when each filter row is whole groups: per group 3 loads, 6 SXTAB16
 * and the group's 6 words stored in a row. */
static void plane_triple(const wide_ctx_t *c, int16_t *buf, int p0, int p1, int p2) {
    const tm_conv_params_t *p = c->p;
    const int run = c->f_w * c->in_c, row_bytes = c->plane_w * c->in_c, step = p->dilation_h * row_bytes;
    const int32_t off2 = c->off2;
    const int8_t *r0 = c->plane + ((p0 / c->out_w) * p->stride_h * c->plane_w + (p0 % c->out_w) * p->stride_w) * c->in_c;
    const int8_t *r1 = c->plane + ((p1 / c->out_w) * p->stride_h * c->plane_w + (p1 % c->out_w) * p->stride_w) * c->in_c;
    const int8_t *r2 = c->plane + ((p2 / c->out_w) * p->stride_h * c->plane_w + (p2 % c->out_w) * p->stride_w) * c->in_c;
    uint32_t *dst = wide_slot(buf, 0, 0);
    for (int fy = 0; fy < c->f_h; ++fy, r0 += step, r1 += step, r2 += step) {
        for (int i = 0; i < run; i += 4, dst += WIDE_GROUP_WORDS) {
            widen_group3(dst, r0 + i, r1 + i, r2 + i, off2);
        }
    }
}

/* rgb3_triple_s2's group: the offset pair in r10, the column words at r0. */
#define RGB3_GROUP_ASM WIDEN3_STM_ASM("r10", "r0")

/*
 * The 7 groups of three 3x3 RGB windows at stride 2 (their first bytes at q, q + 6, q + 12; rows row3 bytes
 * apart) into the column words at dst, group by group: each group's word of each pixel as rgb3_column builds
 * it (the 28th tap the zero point, k[1] = zp << 24), then one STM per group where rgb3_column stores 14 words
 * one by one.  k[0] is the input offset pair.
 */
__attribute__((naked)) static void rgb3_triple_s2(uint32_t *dst __attribute__((unused)),
                                                  const int8_t *q __attribute__((unused)),
                                                  int row3 __attribute__((unused)),
                                                  const int32_t k[2] __attribute__((unused))) {
    __asm__ volatile(
        "push    {r4-r11, lr}\n"
        "ldrd    r10, r11, [r3]\n"
        "add     r12, r1, r2\n" /* row 1 */
        "add     lr, r12, r2\n" /* row 2 */
        "ldr     r4, [r1]\n" /* row 0, bytes 0-3 */
        "ldr     r5, [r1, #6]\n"
        "ldr     r6, [r1, #12]\n"
        RGB3_GROUP_ASM
        "ldr     r4, [r1, #4]\n" /* row 0, bytes 4-7 */
        "ldr     r5, [r1, #10]\n"
        "ldr     r6, [r1, #16]\n"
        RGB3_GROUP_ASM
        "ldrb    r4, [r1, #8]\n" /* row 0, byte 8; row 1, bytes 0-2 */
        "ldrb    r5, [r1, #14]\n"
        "ldrb    r6, [r1, #20]\n"
        "ldr     r2, [r12]\n"
        "orr     r4, r4, r2, lsl #8\n"
        "ldr     r2, [r12, #6]\n"
        "orr     r5, r5, r2, lsl #8\n"
        "ldr     r2, [r12, #12]\n"
        "orr     r6, r6, r2, lsl #8\n"
        RGB3_GROUP_ASM
        "ldr     r4, [r12, #3]\n" /* row 1, bytes 3-6 */
        "ldr     r5, [r12, #9]\n"
        "ldr     r6, [r12, #15]\n"
        RGB3_GROUP_ASM
        "ldrh    r4, [r12, #7]\n" /* row 1, bytes 7-8; row 2, bytes 0-1 */
        "ldrh    r5, [r12, #13]\n"
        "ldrh    r6, [r12, #19]\n"
        "ldr     r2, [lr]\n"
        "orr     r4, r4, r2, lsl #16\n"
        "ldr     r2, [lr, #6]\n"
        "orr     r5, r5, r2, lsl #16\n"
        "ldr     r2, [lr, #12]\n"
        "orr     r6, r6, r2, lsl #16\n"
        RGB3_GROUP_ASM
        "ldr     r4, [lr, #2]\n" /* row 2, bytes 2-5 */
        "ldr     r5, [lr, #8]\n"
        "ldr     r6, [lr, #14]\n"
        RGB3_GROUP_ASM
        "ldr     r4, [lr, #5]\n" /* row 2, bytes 6-8 (of 5-8), and the zero point */
        "ldr     r5, [lr, #11]\n"
        "ldr     r6, [lr, #17]\n"
        "orr     r4, r11, r4, lsr #8\n"
        "orr     r5, r11, r5, lsr #8\n"
        "orr     r6, r11, r6, lsr #8\n"
        RGB3_GROUP_ASM
        "pop     {r4-r11, pc}\n");
}

/* The first byte of output pixel pix's 3x3 RGB window when it and the windows of the `more` pixels after it in
 * its output row lie inside the image, else NULL (they take wide_fill).  Inlined: as a call it cost VWW 22 k
 * cycles. */
static inline __attribute__((always_inline)) const int8_t *rgb3_window(const wide_ctx_t *c, int pix, int more) {
    const tm_conv_params_t *p = c->p;
    const int oy = pix / c->out_w, ox = pix - oy * c->out_w;
    const int y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    if (ox + more >= c->out_w || y0 < 0 || y0 + 3 > c->in_h || x0 < 0 || x0 + more * p->stride_w + 3 > c->in_w) {
        return NULL;
    }
    return c->input + (y0 * c->in_w + x0) * 3;
}

/* VWW's first layer: three pixels of one output row whose windows lie inside the image, from one division and
 * one bounds check (per pixel, the division, the checks and the loop's frame cost more than the column itself);
 * 0 when they do not (the last pixel repeated, a row's end, the border). */
static int rgb3_triple(const wide_ctx_t *c, int16_t *buf, int pix, int p2) {
    const tm_conv_params_t *p = c->p;
    const int8_t *w0 = p2 == pix + 2 ? rgb3_window(c, pix, 2) : NULL;
    if (!w0) {
        return 0;
    }
    const int step = 3 * p->stride_w, row3 = 3 * c->in_w;
    const uint32_t zp = (uint8_t)(-p->input_offset);
    if (p->stride_w == 2) {
        const int32_t k[2] = {c->off2, (int32_t)(zp << 24)};
        rgb3_triple_s2(wide_slot(buf, 0, 0), w0, row3, k);
        return 1;
    }
    rgb3_column(wide_slot(buf, 0, 0), w0, row3, c->off2, zp);
    rgb3_column(wide_slot(buf, 0, 1), w0 + step, row3, c->off2, zp);
    rgb3_column(wide_slot(buf, 0, 2), w0 + 2 * step, row3, c->off2, zp);
    return 1;
}

/* The columns of pixels pix, pix + 1, pix + 2 (past the last pixel, the previous one again). */
static void fill_triple(const wide_ctx_t *c, int16_t *buf, int pix, int pixels) {
    const int p1 = pix + 1 < pixels ? pix + 1 : pix, p2 = pix + 2 < pixels ? pix + 2 : p1;
    if (c->pointwise) { /* the most common case, without wide_fill's frame: per group 3 loads, 6 SXTAB16 */
        const int32_t off2 = c->off2;
        const int8_t *s0 = c->input + pix * c->in_c, *s1 = c->input + p1 * c->in_c, *s2 = c->input + p2 * c->in_c;
        uint32_t *dst = wide_slot(buf, 0, 0);
        if ((c->in_c & 3) == 0 && ((uintptr_t)c->input & 3) == 0) { /* word-aligned pixels: the STM form */
            pointwise_columns(dst, s0, s1, s2, c->kp >> 2, off2);
            return;
        }
        int i = 0; /* kp = in_c rounded up to 4: the word past a pixel meets zero weights */
        if (c->kp & 4) { /* then two groups per pass: half the loop's branches */
            widen_group3(dst, s0, s1, s2, off2);
            i = 4, dst += WIDE_GROUP_WORDS;
        }
        for (; i < c->kp; i += 8, dst += 2 * WIDE_GROUP_WORDS) {
            widen_group3(dst, s0 + i, s1 + i, s2 + i, off2);
            widen_group3(dst + WIDE_GROUP_WORDS, s0 + i + 4, s1 + i + 4, s2 + i + 4, off2);
        }
        return;
    }
    if (c->plane && ((c->f_w * c->in_c) & 3) == 0) { /* KWS's first layer: whole groups per filter row */
        plane_triple(c, buf, pix, p1, p2);
        return;
    }
    if (c->rgb3 && rgb3_triple(c, buf, pix, p2)) {
        return;
    }
    const int px[3] = {pix, p1, p2};
    for (int col = 0; col < 3; ++col) {
        const int8_t *window = c->rgb3 ? rgb3_window(c, px[col], 0) : NULL; /* without wide_fill's frame */
        if (window) {
            rgb3_column(wide_slot(buf, 0, col), window, c->in_w * 3, c->off2, (uint8_t)(-c->p->input_offset));
            continue;
        }
        wide_fill(c, buf, px[col], col);
    }
}

/* wide_triples' table for channels [oc0, oc0 + n): the first pair's doubled biases, then per pair the words
 * of both channels (tm_dsp_wide_rq) and the next pair's doubled biases (zeros after the last). */
static void fill_table(const tm_conv_params_t *p, const int8_t *filter, int k, const int32_t *bias, int oc0, int n,
                       int32_t *table) {
    for (int j = 0; j < n; j += 2) {
        int32_t *rec = table + 6 + 12 * (j >> 1);
        for (int i = 0; i < 2; ++i) {
            const int oc = oc0 + j + i;
            tm_dsp_wide_rq(p, filter + oc * k, k, 1, bias, oc, rec + 3 * i);
            const int32_t bv = (int32_t)((uint32_t)(bias ? bias[oc] : 0) << 1); /* a constant channel's: ignored */
            rec[-6 + 3 * i] = bv, rec[-5 + 3 * i] = bv, rec[-4 + 3 * i] = bv; /* in the previous record */
        }
    }
    for (int i = 0; i < 6; ++i) {
        table[6 + 12 * (n >> 1) - 6 + i] = 0;
    }
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
    /* weights widened (and doubled) by the compiler: no widened weights in the scratch, so chunks are bounded
     * by the table only and the columns of all pixels may take the whole scratch (fewer chunks: fewer fills) */
    const int pre = p->weights16 && p->weights16_doubled;
    int chunk = (((out_c + chunks - 1) / chunks) + 1) & ~1, whole_cols = all_cols;
    if (pre) {
        const int pre_chunks = (out_c + WIDE_MAX_CHUNK - 1) / WIDE_MAX_CHUNK;
        chunk = (((out_c + pre_chunks - 1) / pre_chunks) + 1) & ~1;
        whole_cols = pre_chunks > 1 && cols_bytes <= WIDE_SCRATCH_BYTES;
    }

    /* the widened weights, then the column buffer (one pixel triple, or all of them) */
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
    /* the padded input after what the weights and columns use, where it fits */
    const int32_t triple_bytes = 6 * kp;
    const int32_t used = pre ? (whole_cols ? cols_bytes : triple_bytes)
                             : all_cols ? WIDE_SCRATCH_BYTES : WIDE_WEIGHT_BYTES + triple_bytes;
    const int32_t pbytes = plane_bytes(p, f_dims, out_dims, c.in_c, &c.plane_w);
    int8_t *plane = (c.in_c & 3) && p->dilation_w == 1 && p->pad_h >= 0 && p->pad_w >= 0 &&
                            used + pbytes <= WIDE_SCRATCH_BYTES
                        ? (int8_t *)(void *)scratch + used
                        : NULL;
    for (int b = 0; b < in_dims[0]; ++b) {
        c.input = input + b * c.in_h * c.in_w * c.in_c;
        c.input_end = c.input + c.in_h * c.in_w * c.in_c;
        if (plane) {
            build_plane(&c, plane, pbytes);
            c.plane = plane;
        }
        if (whole_cols) {
            for (int pix = 0; pix < pixels; pix += 3) {
                fill_triple(&c, cols + pix * kp, pix, pixels); /* 3 * kp per triple */
            }
        }
        for (int oc0 = 0; oc0 < out_c; oc0 += chunk) {
            const int n = out_c - oc0 < chunk ? out_c - oc0 : chunk;
            const int32_t *w = wbuf;
            if (pre) { /* per channel pair kp words */
                w = (const int32_t *)(const void *)p->weights16 + (oc0 >> 1) * kp;
            } else {
                widen_weights(filter, k, kp, oc0, n, wbuf);
            }
            fill_table(p, filter, k, bias, oc0, n, table);
            int8_t *out_b = output + b * pixels * out_c + oc0;
            for (int pix = 0; pix < pixels; pix += 3) {
                int16_t *buf = whole_cols ? cols + pix * kp : cols;
                if (!whole_cols) {
                    fill_triple(&c, buf, pix, pixels);
                }
                /* past the last pixel, the previous one again: computed and stored twice */
                const int32_t d1 = pix + 1 < pixels ? out_c : 0, d2 = pix + 2 < pixels ? 2 * out_c : d1;
                int8_t *o0 = out_b + pix * out_c;
                const wide_job_t job = {buf, w, table, o0, d1, d2, o0 + n, kp >> 2};
                wide_triples(&job);
            }
        }
    }
    return 1;
}

#endif /* TM_HAVE_DSP */
