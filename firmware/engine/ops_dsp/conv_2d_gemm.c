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
 */
#include "dsp_conv.h"

typedef struct {
    const tm_conv_params_t *p;
    const int8_t *input; /* this batch */
    const int8_t *filter;
    const int32_t *bias;
    int in_h, in_w, in_c, f_h, f_w, out_w, out_c;
    int k, k4; /* taps per pixel, and rounded down to a multiple of 4 */
} gemm_ctx_t;

/* Slot of tap k of pixel `col` (0, 1) in the buffer. */
static inline int slot_of(const gemm_ctx_t *g, int k, int col) {
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

/* The same for any in_c, one tap at a time. */
static void fill_run_any(const gemm_ctx_t *g, int16_t *buf, const int8_t *src, int k, int col) {
    const int32_t off = g->p->input_offset;
    for (int i = 0; i < g->in_c; ++i) {
        buf[slot_of(g, k + i, col)] = src ? (int16_t)(src[i] + off) : 0;
    }
}

/* The taps of output pixel `pix` (row-major over the output plane) into column `col`. */
static void fill_column(const gemm_ctx_t *g, int16_t *buf, int pix, int col) {
    const tm_conv_params_t *p = g->p;
    const int oy = pix / g->out_w, ox = pix - oy * g->out_w;
    const int y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    const int aligned = (g->in_c & 3) == 0;
    const int32_t off2 = tm_pack_offset(p->input_offset);
    int k = 0;
    for (int fy = 0; fy < g->f_h; ++fy) {
        const int y = y0 + fy * p->dilation_h;
        const int row_ok = y >= 0 && y < g->in_h;
        for (int fx = 0; fx < g->f_w; ++fx, k += g->in_c) {
            const int x = x0 + fx * p->dilation_w;
            const int8_t *src = row_ok && x >= 0 && x < g->in_w ? g->input + (y * g->in_w + x) * g->in_c : 0;
            if (aligned) {
                fill_run_aligned(buf, src, k, g->in_c, col, off2);
            } else {
                fill_run_any(g, buf, src, k, col);
            }
        }
    }
}

/*
 * The 4-tap loop of gemm_2x2 in assembly: gcc keeps the 14 live values (4 sums, 4 widened weights,
 * 2 input words, 4 pointers) in registers only when told to.  r0 = buffer, r1 = weights of channel
 * 0, r2 = offset of channel 1's weights, r3 = end of channel 0's weights; the sums s[4] (5th argument,
 * on the stack) are read and written back.  18 instructions per 16 MACs.
 */
__attribute__((naked)) static void gemm_2x2_loop(const int16_t *buf __attribute__((unused)),
                                                 const int8_t *w0 __attribute__((unused)),
                                                 int dw __attribute__((unused)),
                                                 const int8_t *end __attribute__((unused)),
                                                 int32_t *s __attribute__((unused))) {
    __asm__ volatile(
        "push   {r4-r11, lr}\n"
        "ldr    r12, [sp, #36]\n"
        "ldm    r12, {r4-r7}\n"
        "cmp    r1, r3\n"
        "beq    2f\n"
        "1:\n"
        "ldr    r12, [r1, r2]\n"
        "ldr    lr, [r1], #4\n"
        "sxtb16 r8, lr\n"
        "sxtb16 r9, lr, ror #8\n"
        "sxtb16 r10, r12\n"
        "sxtb16 r11, r12, ror #8\n"
        "ldrd   r12, lr, [r0, #8]\n"
        "smlad  r6, r12, r8, r6\n"
        "smlad  r7, r12, r10, r7\n"
        "smlad  r6, lr, r9, r6\n"
        "smlad  r7, lr, r11, r7\n"
        "ldrd   r12, lr, [r0], #16\n"
        "smlad  r4, r12, r8, r4\n"
        "smlad  r5, r12, r10, r5\n"
        "smlad  r4, lr, r9, r4\n"
        "smlad  r5, lr, r11, r5\n"
        "cmp    r1, r3\n"
        "bne    1b\n"
        "2:\n"
        "ldr    r12, [sp, #36]\n"
        "stm    r12, {r4-r7}\n"
        "pop    {r4-r11, pc}\n");
}

/*
 * s[0..3] += (pixel 0, channel w0), (pixel 0, channel w0 + dw), (pixel 1, w0), (pixel 1, w0 + dw)
 * over groups of 4 taps (k4 taps), then the tail taps.
 */
static void gemm_2x2(const int16_t *buf, const int8_t *w0, int dw, int k4, int tail, int32_t s[4]) {
    gemm_2x2_loop(buf, w0, dw, w0 + k4, s);
    const int16_t *t = buf + 2 * k4;
    w0 += k4;
    for (int i = 0; i < tail; ++i) {
        const int32_t x0 = t[i], x1 = t[4 + i], v0 = w0[i], v1 = w0[dw + i];
        s[0] += x0 * v0, s[1] += x0 * v1, s[2] += x1 * v0, s[3] += x1 * v1;
    }
}

static inline int8_t clamp_out(const tm_conv_params_t *p, int32_t v) {
    v += p->output_offset;
    v = v < p->act_min ? p->act_min : v;
    return (int8_t)(v > p->act_max ? p->act_max : v);
}

/* The two pixels' outputs of channel oc (out1 NULL: pixel 0 only). */
static inline void store_channel(const tm_conv_params_t *p, int oc, int32_t s0, int32_t s1, int8_t *out0,
                                 int8_t *out1) {
    const tm_dsp_rq_t q = tm_dsp_rq_of(p->out_multiplier[oc], p->out_shift[oc]);
    if (q.shift < 0) {
        out0[oc] = clamp_out(p, tm_dsp_requantize_right(s0, q.multiplier, q.half, q.right_m1));
        if (out1) {
            out1[oc] = clamp_out(p, tm_dsp_requantize_right(s1, q.multiplier, q.half, q.right_m1));
        }
    } else {
        out0[oc] = clamp_out(p, tm_dsp_requantize(s0, q.multiplier, q.shift));
        if (out1) {
            out1[oc] = clamp_out(p, tm_dsp_requantize(s1, q.multiplier, q.shift));
        }
    }
}

/* All output channels of pixels out0 (and out1 when non-NULL) from the filled buffer. */
static void pixels_pair(const gemm_ctx_t *g, const int16_t *buf, int8_t *out0, int8_t *out1) {
    const tm_conv_params_t *p = g->p;
    for (int oc = 0; oc < g->out_c; oc += 2) {
        const int two = oc + 1 < g->out_c;
        const int32_t b0 = g->bias ? g->bias[oc] : 0, b1 = g->bias && two ? g->bias[oc + 1] : 0;
        int32_t s[4] = {b0, b1, b0, b1};
        gemm_2x2(buf, g->filter + oc * g->k, two ? g->k : 0, g->k4, g->k - g->k4, s);
        store_channel(p, oc, s[0], s[2], out0, out1);
        if (two) {
            store_channel(p, oc + 1, s[1], s[3], out0, out1);
        }
    }
}

int tm_dsp_conv_2d_gemm_fits(int k) { return k <= TM_DSP_GEMM_MAX_TAPS; }

void tm_dsp_conv_2d_gemm(const tm_conv_params_t *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                         int8_t *output, const int32_t in_dims[4], const int32_t f_dims[4], const int32_t out_dims[4]) {
    int16_t buf[2 * TM_DSP_GEMM_MAX_TAPS + 8] __attribute__((aligned(8)));
    gemm_ctx_t g = {
        .p = p, .filter = filter, .bias = bias,
        .in_h = in_dims[1], .in_w = in_dims[2], .in_c = in_dims[3], .f_h = f_dims[1], .f_w = f_dims[2],
        .out_w = out_dims[2], .out_c = out_dims[3],
    };
    g.k = g.f_h * g.f_w * g.in_c;
    g.k4 = g.k & ~3;
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
