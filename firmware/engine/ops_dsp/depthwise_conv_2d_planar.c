/*
 * DEPTHWISE_CONV_2D, int8, 3x3 filter, stride 1, dilation 1: the channel-plane path of the DSP kernel
 * (depthwise_conv_2d.c tries it first; it returns 0 for what it does not cover).
 *
 * A depthwise filter never mixes channels, so the MACs of one output cannot pair up across channels as
 * SMLAD wants; they pair up along a row instead.  Channel by channel, the input plane is copied once,
 * widened to int16 with the input offset added, into a zero-bordered buffer of DWP_PW halfwords per
 * row (the padding is then taps of value 0, which is what skipping them adds).  A word at an even
 * column x holds the pair (i[x], i[x+1]), so two neighbouring outputs x, x+1 of one filter row
 * (w0, w1, w2) are
 *     out[x]   = i[x] w0 + i[x+1] w1 + i[x+2] w2 = SMLAD((i[x], i[x+1]), (w0, w1)) + SMLABT((i[x+2], .), (w1, w2))
 *     out[x+1] = i[x+1] w0 + i[x+2] w1 + i[x+3] w2 = SMLATB((i[x], i[x+1]), (w0, w1)) + SMLAD((i[x+2], i[x+3]), (w1, w2))
 * from one LDRD and four multiply-accumulates (6 MACs), the six weight pairs of the filter held in
 * registers for the whole plane (an odd run ends with one output computed alone).  The sums are the same int32 sums as the portable kernel's.  The
 * requantization is conv_2d_wide.c's (filter and bias doubled, so the sums are 2 acc: SMMLAR by M onto
 * the rounding constant with the output offset less the sum's sign, ASR, SSAT #8), hence a full int8 activation range
 * only; a channel it cannot do (tm_dsp_wide_rq) is requantized by tm_dsp_out_s8 from the same plane.
 *
 * Scratch: the plane, DWP_MAX_ROWS rows of DWP_PW int16 on the stack, within what
 * tm_depthwise_conv_2d_dsp_scratch_bytes reserves for the kernel (host/compiler/ops/conv.py).
 */
#include "dsp_conv.h"

#if TM_HAVE_DSP
#include "dsp_common.h"

#define DWP_PW 64        /* halfwords per plane row: outputs rows of up to DWP_PW - 2 pixels */
#define DWP_ROW_BYTES 128 /* DWP_PW * 2, spelled out for the assembly's immediates */
#define DWP_MAX_ROWS 64
/* Below this many output pixels the per-channel setup (the plane, the table, the call: about 400 cycles)
 * costs more than the pairs save over the tap-list path (VWW's 3x3 x 256 layer: 128 k -> 231 k cycles). */
#define DWP_MIN_PIXELS 25

#define DWP_STR(x) #x
#define DWP_XSTR(x) DWP_STR(x)

/* Work of dwp_rows (read by the assembly: keep the field offsets). */
typedef struct {
    int32_t bias2a, bias2b; /* +0 +4  twice the bias, twice */
    int32_t m, c;           /* +8 +12 requantization: SMMULR multiplier, rounding constant with the offset */
    int32_t r;              /* +16    right shift */
    int32_t row_end;        /* +20    (the assembly's) */
    int32_t rows;           /* +24    runs (>= 1) */
    int32_t out_step;       /* +28    bytes from the end of a run's pairs to the next run */
    int32_t plane_skip;     /* +32    bytes from the end of a plane row's pairs to the next row */
    int32_t row_bytes;      /* +36    4 * whole pairs per run (may be 0) */
    int32_t odd;            /* +40    runs end with one output more */
    const int16_t *plane;   /* +44    the first run's first pair */
    int8_t *out;            /* +48 */
    int32_t step;           /* +52    output bytes from one output of a run to the next */
    int32_t w[6];           /* +56    per filter row: (2 w0, 2 w1), (2 w1, 2 w2) */
} dwp_job_t;

/* One filter row (weights in WA, WB) of a pair: LOAD puts the pair's two plane words into r12, lr. */
#define DWP_ROW(LOAD, WA, WB)                \
    LOAD                                     \
    "smlad   r10, r12, " WA ", r10\n"        \
    "smlatb  r11, r12, " WA ", r11\n"        \
    "smlabt  r10, lr, " WB ", r10\n"         \
    "smlad   r11, lr, " WB ", r11\n"

/* One filter row of a lone last output (r10 only). */
#define DWP_ROW1(OFF, WA, WB)                \
    "ldrd    r12, lr, [r0, #" OFF "]\n"      \
    "smlad   r10, r12, " WA ", r10\n"        \
    "smlabt  r10, lr, " WB ", r10\n"

/* Requantize r10 (and r11) in place: SMMLAR by M onto c less the sign (r3; conv_2d_wide.c), ASR by r, SSAT #8
 * (leaves lr = row_end). */
#define DWP_RQ(B)                            \
    "ldrd    r12, lr, [sp, #8]\n"            \
    "sub     r3, lr, r10, lsr #31\n"         \
    "smmlar  r10, r10, r12, r3\n"            \
    B("sub     r3, lr, r11, lsr #31\n")      \
    B("smmlar  r11, r11, r12, r3\n")         \
    "ldrd    r12, lr, [sp, #16]\n"           \
    "asr     r10, r10, r12\n"                \
    B("asr     r11, r11, r12\n")             \
    "ssat    r10, #8, r10\n"                 \
    B("ssat    r11, #8, r11\n")
#define DWP_BOTH(X) X
#define DWP_ONE(X) ""

/* One pair of a run: the bias, three filter rows, the requantization, the two stores, the next pair's output. */
#define DWP_PAIR                                                                      \
    "ldrd    r10, r11, [sp]\n"                                                        \
    DWP_ROW("ldrd    r12, lr, [r0], #4\n", "r4", "r5")                                \
    DWP_ROW("ldrd    r12, lr, [r0, #" DWP_XSTR(DWP_ROW_BYTES - 4) "]\n", "r6", "r7")   \
    DWP_ROW("ldrd    r12, lr, [r0, #" DWP_XSTR(2 * DWP_ROW_BYTES - 4) "]\n", "r8", "r9") \
    DWP_RQ(DWP_BOTH)                                                                  \
    "strb    r10, [r1]\n"                                                             \
    "strb    r11, [r1, r2]\n"                                                         \
    "add     r1, r1, r2, lsl #1\n"

/*
 * Runs of output pairs: r0 plane, r1 out, r2 step, r4-r9 weights, r10 r11 the pair's sums, r12 lr the
 * plane words.  Stack: the job's first 11 words.  Per pair 3 LDRD, 12 multiply-accumulates, 8
 * instructions of requantization and 2 STRB, four pairs per pass of the loop (entered at the copy
 * that leaves a multiple of four); an odd run ends with one output alone.
 */
__attribute__((naked)) static void dwp_rows(const dwp_job_t *job __attribute__((unused))) {
    __asm__ volatile(
        "push    {r4-r11, lr}\n"
        "mov     r12, r0\n"
        "ldm     r12!, {r0-r10}\n"
        "push    {r0-r10}\n"
        "ldm     r12, {r0-r2, r4-r9}\n"
        "1:\n"
        "ldr     r3, [sp, #36]\n"
        "add     r12, r0, r3\n"
        "str     r12, [sp, #20]\n"
        "cmp     r0, r12\n"
        "beq     3f\n"
        "ubfx    r3, r3, #2, #2\n" /* pairs % 4: enter at the copy that leaves a multiple of 4 */
        "cmp     r3, #2\n"
        "beq     6f\n"
        "bhi     5f\n"
        "cmp     r3, #1\n"
        "beq     7f\n"
        "2:\n"
        DWP_PAIR
        "5:\n"
        DWP_PAIR
        "6:\n"
        DWP_PAIR
        "7:\n"
        DWP_PAIR
        "cmp     r0, lr\n"
        "bne     2b\n"
        "3:\n"
        "ldr     r12, [sp, #40]\n"
        "cmp     r12, #0\n"
        "beq     4f\n"
        "ldr     r10, [sp]\n"
        DWP_ROW1("0", "r4", "r5")
        DWP_ROW1(DWP_XSTR(DWP_ROW_BYTES), "r6", "r7")
        DWP_ROW1(DWP_XSTR(2 * DWP_ROW_BYTES), "r8", "r9")
        DWP_RQ(DWP_ONE)
        "strb    r10, [r1]\n"
        "4:\n"
        "ldrd    r12, lr, [sp, #28]\n"
        "add     r1, r1, r12\n"
        "add     r0, r0, lr\n"
        "ldr     r12, [sp, #24]\n"
        "subs    r12, r12, #1\n"
        "str     r12, [sp, #24]\n"
        "bne     1b\n"
        "add     sp, sp, #44\n"
        "pop     {r4-r11, pc}\n");
}

static inline int32_t pack16(int32_t lo, int32_t hi) {
    return (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16));
}

/*
 * The plane's axes: runs of output pairs go along b, one run per a.  Along x (a = y, b = x) as the
 * picture is, or transposed (a = x, b = y) when the image is taller than wide: fewer, longer runs,
 * and an odd width no longer wastes a sixth of the pairs (KWS: 25 x 5).  Steps are in bytes.
 */
typedef struct {
    const tm_conv_params_t *p;
    int ch, out_a, out_b;          /* output extent along a and b */
    int pad_a, pad_b;
    int in_a1, in_b1;              /* input rows and columns [0, in_a1) x [0, in_b1) land in the plane's used part */
    int in_step_a, in_step_b, out_step_a, out_step_b, f_step_a, f_step_b;
} dwp_geom_t;

/*
 * `quads` (>= 1) times four values of one channel (bytes at src, src + step, ...) into the word-aligned plane row
 * at d: four LDRSB back to back, two PKHBT, two SADD16 of the offset pair and one STRD per four (17.6 estimated
 * cycles a quad with the loop on VWW, where gcc's byte load, add and halfword store per value counted 25; two
 * quads per pass saved under 5 k cycles on VWW).  Not inlined: inside tm_dsp_depthwise_planar gcc found no
 * registers for its operands ("impossible constraints").
 */
__attribute__((noinline)) static void fill_quads(const int8_t *src, int step, int quads, int16_t *d, int32_t off2) {
    __asm__ volatile(
        "1:\n"
        "ldrsb   r4, [%[src]]\n"
        "ldrsb   r5, [%[src], %[s1]]\n"
        "ldrsb   r6, [%[src], %[s2]]\n"
        "ldrsb   r12, [%[src], %[s3]]\n"
        "add     %[src], %[src], %[s1], lsl #2\n"
        "pkhbt   r4, r4, r5, lsl #16\n"
        "pkhbt   r6, r6, r12, lsl #16\n"
        "sadd16  r4, r4, %[off2]\n"
        "sadd16  r6, r6, %[off2]\n"
        "strd    r4, r6, [%[d]], #8\n"
        "subs    %[n], %[n], #1\n"
        "bne     1b\n"
        : [src] "+r"(src), [d] "+r"(d), [n] "+r"(quads)
        : [s1] "r"(step), [s2] "r"(2 * step), [s3] "r"(3 * step), [off2] "r"(off2)
        : "r4", "r5", "r6", "r12", "cc", "memory");
}

/* Channel k of the input into the plane (the border, never written, stays 0): a value to a word boundary, then
 * fill_quads, then what is left one by one. */
static void fill_plane(const dwp_geom_t *g, const int8_t *in_b, int k, int16_t *plane) {
    const int32_t off = g->p->input_offset, off2 = tm_pack_offset(off);
    const int n = g->in_b1, step = g->in_step_b;
    for (int a = 0; a < g->in_a1; ++a) {
        const int8_t *src = in_b + a * g->in_step_a + k;
        int16_t *dst = plane + (a + g->pad_a) * DWP_PW + g->pad_b;
        int i = 0;
        if (n > 0 && ((uintptr_t)dst & 2)) {
            dst[0] = (int16_t)(src[0] + off);
            i = 1, src += step;
        }
        const int quads = (n - i) >> 2;
        if (quads > 0) {
            fill_quads(src, step, quads, dst + i, off2);
            i += 4 * quads, src += 4 * quads * step;
        }
        for (; i < n; ++i, src += step) {
            dst[i] = (int16_t)(*src + off);
        }
    }
}

/* One pixel's four channels (the word at src) into the four planes at dst. */
static inline void fill4_one(int16_t *dst, int stride, const int8_t *src, int32_t off2) {
    const uint32_t v = tm_ld32(src);
    const int32_t even = __sxtab16(off2, v), odd = tm_sxtab16_ror8(off2, v); /* channels 0, 2 and 1, 3 */
    dst[0] = (int16_t)even, dst[stride] = (int16_t)odd;
    dst[2 * stride] = (int16_t)(even >> 16), dst[3 * stride] = (int16_t)(odd >> 16);
}

/* One pair of pixels of fill4_pairs. */
#define FILL4_PAIR                                 \
    "ldr     r8, [%[src]]\n"                        \
    "ldr     r9, [%[src], %[step]]\n"               \
    "add     %[src], %[src], %[step], lsl #1\n"     \
    "sxtab16 r10, %[off2], r8\n"                    \
    "sxtab16 r11, %[off2], r8, ror #8\n"            \
    "sxtab16 r12, %[off2], r9\n"                    \
    "sxtab16 lr, %[off2], r9, ror #8\n"             \
    "pkhbt   r8, r10, r12, lsl #16\n" /* channel 0 */ \
    "pkhtb   r9, r12, r10, asr #16\n" /* channel 2 */ \
    "pkhbt   r10, r11, lr, lsl #16\n" /* channel 1 */ \
    "pkhtb   r11, lr, r11, asr #16\n" /* channel 3 */ \
    "str     r10, [%[d], %[b1]]\n"                  \
    "str     r9, [%[d], %[b2]]\n"                   \
    "str     r11, [%[d], %[b3]]\n"                  \
    "str     r8, [%[d]], #4\n"

/*
 * `pairs` (>= 1) pairs of pixels (words at src, src + step, ...) into four planes from the word-aligned d on,
 * planes `bytes` apart: per pair two loads, four SXTAB16, four PKHBT/PKHTB, four word stores (gcc spilled
 * the offsets and took 22 instructions), two pairs per pass of the loop.
 */
static void fill4_pairs(const int8_t *src, int step, int pairs, int16_t *d, int bytes, int32_t off2) {
    __asm__ volatile(
        "tst     %[n], #1\n" /* odd: one pair more counted, the first copy skipped */
        "itt     ne\n"
        "addne   %[n], %[n], #1\n"
        "bne     2f\n"
        "1:\n"
        FILL4_PAIR
        "2:\n"
        FILL4_PAIR
        "subs    %[n], %[n], #2\n"
        "bne     1b\n"
        : [src] "+r"(src), [d] "+r"(d), [n] "+r"(pairs)
        : [step] "r"(step), [off2] "r"(off2), [b1] "r"(bytes), [b2] "r"(2 * bytes), [b3] "r"(3 * bytes)
        : "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}

/*
 * Channels k .. k + 3 (k and the channel count multiples of 4) into four planes `stride` (even) halfwords
 * apart: per two pixels two word loads, four SXTAB16 and four word stores (PKHBT/PKHTB) for four channels,
 * where fill_plane takes a byte load, an add and a halfword store per channel and pixel (KWS's depthwise
 * layers: about 1,000 -> 300 cycles per channel).
 */
static void fill_planes4(const dwp_geom_t *g, const int8_t *in_b, int k, int16_t *plane, int stride) {
    const int32_t off2 = tm_pack_offset(g->p->input_offset);
    const int n = g->in_b1, step = g->in_step_b;
    for (int a = 0; a < g->in_a1; ++a) {
        const int8_t *src = in_b + a * g->in_step_a + k;
        int16_t *dst = plane + (a + g->pad_a) * DWP_PW + g->pad_b;
        int i = 0;
        if (n > 0 && ((uintptr_t)dst & 2)) { /* to a word boundary */
            fill4_one(dst, stride, src, off2);
            i = 1, src += step;
        }
        const int pairs = (n - i) >> 1;
        if (pairs > 0) {
            fill4_pairs(src, step, pairs, dst + i, 2 * stride, off2);
            i += 2 * pairs, src += 2 * pairs * step;
        }
        if (i < n) {
            fill4_one(dst + i, stride, src, off2);
        }
    }
}

/* The sum (bias included) of output (a, b) of channel k from the plane. */
static int32_t plane_sum(const dwp_geom_t *g, const int16_t *plane, const int8_t *filter, int32_t bias, int k, int a,
                         int b) {
    int32_t acc = bias;
    for (int fa = 0; fa < 3; ++fa) {
        for (int fb = 0; fb < 3; ++fb) {
            acc += plane[(a + fa) * DWP_PW + b + fb] * filter[fa * g->f_step_a + fb * g->f_step_b + k];
        }
    }
    return acc;
}

/* Channel k's outputs over the assembly, every run in one call. */
/* The job fields that every channel of the op shares. */
static void job_for_op(const dwp_geom_t *g, dwp_job_t *job) {
    const int pairs = g->out_b / 2;
    job->row_end = 0, job->rows = g->out_a, job->out_step = g->out_step_a - 2 * pairs * g->out_step_b;
    job->plane_skip = DWP_ROW_BYTES - 4 * pairs, job->row_bytes = 4 * pairs, job->odd = g->out_b & 1;
    job->step = g->out_step_b;
}

/* Channel k's outputs over the assembly, every run in one call (job: job_for_op's, the rest set here; set field
 * by field: an initializer zeroed the whole job through memset first, about 40 cycles per channel). */
static void channel_by_pairs(const dwp_geom_t *g, dwp_job_t *job, const int16_t *plane, const int8_t *filter,
                             int32_t bias, const int32_t t[3], int k, int8_t *out_b) {
    job->bias2a = 2 * bias, job->bias2b = 2 * bias, job->m = t[0], job->c = t[1], job->r = t[2];
    job->plane = plane, job->out = out_b + k;
    for (int fa = 0; fa < 3; ++fa) {
        const int8_t *f = filter + fa * g->f_step_a + k;
        const int32_t w0 = 2 * f[0], w1 = 2 * f[g->f_step_b], w2 = 2 * f[2 * g->f_step_b];
        job->w[2 * fa] = pack16(w0, w1), job->w[2 * fa + 1] = pack16(w1, w2);
    }
    dwp_rows(job);
}

/* Channel k requantized one output at a time (a channel the table cannot do). */
static void channel_by_outputs(const dwp_geom_t *g, const int16_t *plane, const int8_t *filter, int32_t bias, int k,
                               int8_t *out_b) {
    const tm_conv_params_t *p = g->p;
    for (int a = 0; a < g->out_a; ++a) {
        for (int b = 0; b < g->out_b; ++b) {
            const int32_t acc = plane_sum(g, plane, filter, bias, k, a, b);
            out_b[a * g->out_step_a + b * g->out_step_b + k] =
                tm_dsp_out_s8(acc, p->out_multiplier[k], p->out_shift[k], p->output_offset, p->act_min, p->act_max);
        }
    }
}

/* Whether a run along this axis fits the plane, and its cost in pairs plus run overheads (about 3 pairs). */
static int axis_cost(int out_a, int out_b) {
    return out_b <= DWP_PW - 2 && out_a + 2 <= DWP_MAX_ROWS ? out_a * ((out_b + 1) / 2 + 3) : 0;
}

/* Whether the op (3x3 filter) takes this path. */
static int takes(const tm_conv_params_t *p, int out_h, int out_w) {
    return p->stride_h == 1 && p->stride_w == 1 && p->dilation_h == 1 &&
           p->dilation_w == 1 && p->depth_multiplier == 1 && p->act_min == -128 && p->act_max == 127 && out_w >= 1 &&
           out_h * out_w >= DWP_MIN_PIXELS && p->pad_h >= 0 && p->pad_w >= 0 &&
           (axis_cost(out_h, out_w) || axis_cost(out_w, out_h));
}

/* The axes: along x unless transposed runs fit and cost less. */
static dwp_geom_t geometry(const tm_conv_params_t *p, int in_h, int in_w, int ch, int out_h, int out_w) {
    const int along_x = axis_cost(out_h, out_w), along_y = axis_cost(out_w, out_h);
    const int transposed = along_y && (!along_x || along_y < along_x);
    dwp_geom_t g = {p, ch, out_h, out_w, p->pad_h, p->pad_w, in_h, in_w, in_w * ch, ch, out_w * ch, ch, 3 * ch, ch};
    if (transposed) {
        g = (dwp_geom_t){p, ch, out_w, out_h, p->pad_w, p->pad_h, in_w, in_h,
                         ch, in_w * ch, ch, out_w * ch, ch, 3 * ch};
    }
    /* only what the pairs read: out_a + 2 rows, 2 * pairs + 2 columns */
    const int rows = g.out_a + 2, cols = 2 * ((g.out_b + 1) / 2) + 2;
    g.in_a1 = g.in_a1 < rows - g.pad_a ? g.in_a1 : rows - g.pad_a;
    g.in_b1 = g.in_b1 < cols - g.pad_b ? g.in_b1 : cols - g.pad_b;
    return g;
}

__attribute__((noinline)) int tm_dsp_depthwise_planar(const tm_conv_params_t *p, const int8_t *in_b,
                                                      const int8_t *filter, const int32_t *bias, int8_t *out_b,
                                                      int in_h, int in_w, int ch, int out_h, int out_w) {
    if (!takes(p, out_h, out_w)) {
        return 0;
    }
    int16_t plane[DWP_MAX_ROWS * DWP_PW] __attribute__((aligned(8)));
    const dwp_geom_t g = geometry(p, in_h, in_w, ch, out_h, out_w);
    /* four channels' planes at once where they fit */
    const int stride = (g.out_a + 2) * DWP_PW, group = (ch & 3) == 0 && 4 * (g.out_a + 2) <= DWP_MAX_ROWS ? 4 : 1;
    memset(plane, 0, (size_t)group * (size_t)stride * sizeof *plane);
    dwp_job_t job;
    job_for_op(&g, &job);
    for (int k = 0; k < ch; ++k) {
        const int j = k & (group - 1);
        if (j == 0) {
            if (group == 4) {
                fill_planes4(&g, in_b, k, plane, stride);
            } else {
                fill_plane(&g, in_b, k, plane);
            }
        }
        const int16_t *pl = plane + j * stride;
        const int32_t b = bias ? bias[k] : 0;
        int32_t t[3];
        if (tm_dsp_wide_rq(p, filter + k, 9, ch, bias, k, t) != TM_DSP_WIDE_UNSUPPORTED) {
            channel_by_pairs(&g, &job, pl, filter, b, t, k, out_b);
        } else {
            channel_by_outputs(&g, pl, filter, b, k, out_b);
        }
    }
    return 1;
}

#endif /* TM_HAVE_DSP */
