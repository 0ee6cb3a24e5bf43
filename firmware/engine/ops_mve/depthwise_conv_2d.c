/*
 * DEPTHWISE_CONV_2D, int8, depth multiplier 1, on Helium.  Same results as
 * ops/depthwise_conv_2d.c, bit for bit.
 *
 * Channels are the vector lanes: 16 channels of one output pixel at a time,
 * looping over the in-image taps only.  VLDRB.S16 widens 8 int8 to int16 lanes;
 * VMULLB / VMULLT multiply the even / odd lanes to int32 (MVE has no
 * lane-wise multiply-accumulate), so the four accumulators hold the channels
 * in the order 0,2,4,6 | 1,3,5,7 | 8,10,.. | 9,11,..; the per-channel tables
 * (effective bias, multipliers, shifts) are stored in that order, and VMOVNB /
 * VMOVNT put the requantized lanes back in channel order.  For a pixel whose
 * window lies inside the image the input offset is folded into the effective
 * bias, bias + offset * sum of the channel's filter (mve_common.h): a tap costs
 * 4 loads, 4 multiplies and 4 adds per 16 MACs; border pixels also add the
 * offset to the int16 input lanes.  int16x8 and depth multipliers > 1 go to the
 * DSP (or portable) kernel.
 */
#include "mve_common.h"

#if defined(TM_OPT_DSP)
#define TM_DW_FALLBACK tm_kernel_depthwise_conv_2d_dsp
#else
#define TM_DW_FALLBACK tm_kernel_depthwise_conv_2d
#endif

typedef struct {
    int in_h, in_w, c, out_h, out_w, f_h, f_w;
} dw_geom_t;

/* The filter taps [t0, t1) whose input lies inside [0, size). */
static void tap_range(int origin, int taps, int dilation, int size, int *t0, int *t1) {
    int a = 0, b = taps;
    while (a < b && origin + dilation * a < 0) {
        ++a;
    }
    while (b > a && origin + dilation * (b - 1) >= size) {
        --b;
    }
    *t0 = a, *t1 = b;
}

/* The window of one output pixel: its valid taps and where they start. */
typedef struct {
    int fy0, fy1, fx0, fx1;
    const int8_t *in;   /* input at tap (fy0, fx0), channel 0 of the chunk */
    const int8_t *w;    /* filter at tap (fy0, fx0), channel 0 of the chunk */
    int interior;       /* every tap in the image */
} dw_window_t;

/* One filter row of `taps` taps (input x_step bytes apart, filter c bytes apart)
 * into 16 channels: 4 loads, 4 multiplies and 4 adds per tap (15 instructions
 * with the loop, 16 MACs).  With `OFFSET`, x + offset per int16 lane first.
 * Assembly because GCC 12 runs out of vector registers here (it spills an
 * accumulator to the stack on every tap). */
#define TM_DW_ROW16(OFFSET_ADD)                                                                  \
    __asm__ volatile("   wls lr, %[n], 2f\n"                                                    \
                     "1: vldrb.s16 q0, [%[x]]\n"                                                \
                     "   vldrb.s16 q1, [%[w]]\n" OFFSET_ADD("q0")                                \
                     "   vmullb.s16 q2, q0, q1\n"                                               \
                     "   vadd.i32 %q[e0], %q[e0], q2\n"                                         \
                     "   vmullt.s16 q2, q0, q1\n"                                               \
                     "   vadd.i32 %q[o0], %q[o0], q2\n"                                         \
                     "   vldrb.s16 q0, [%[x], #8]\n"                                            \
                     "   vldrb.s16 q1, [%[w], #8]\n" OFFSET_ADD("q0")                            \
                     "   vmullb.s16 q2, q0, q1\n"                                               \
                     "   vadd.i32 %q[e1], %q[e1], q2\n"                                         \
                     "   vmullt.s16 q2, q0, q1\n"                                               \
                     "   vadd.i32 %q[o1], %q[o1], q2\n"                                         \
                     "   add %[x], %[x], %[x_step]\n"                                           \
                     "   add %[w], %[w], %[w_step]\n"                                           \
                     "   le lr, 1b\n"                                                           \
                     "2:\n"                                                                     \
                     : [x] "+l"(x), [w] "+l"(w), [e0] "+w"(a->e0), [o0] "+w"(a->o0), [e1] "+w"(a->e1), \
                       [o1] "+w"(a->o1)                                                         \
                     : [n] "r"(taps), [x_step] "r"(x_step), [w_step] "r"(w_step), [off] "r"(off) \
                     : "q0", "q1", "q2", "lr", "memory")

/* The same for the first `lanes` (<= 8) channels: predicated loads (zeros
 * beyond), even/odd results in e0/o0. */
#define TM_DW_ROW8(OFFSET_ADD)                                                                   \
    __asm__ volatile("   vmsr p0, %[pred]\n"                                                    \
                     "   wls lr, %[n], 2f\n"                                                    \
                     "1: vpstt\n"                                                               \
                     "   vldrbt.s16 q0, [%[x]]\n"                                               \
                     "   vldrbt.s16 q1, [%[w]]\n" OFFSET_ADD("q0")                               \
                     "   vmullb.s16 q2, q0, q1\n"                                               \
                     "   vadd.i32 %q[e0], %q[e0], q2\n"                                         \
                     "   vmullt.s16 q2, q0, q1\n"                                               \
                     "   vadd.i32 %q[o0], %q[o0], q2\n"                                         \
                     "   add %[x], %[x], %[x_step]\n"                                           \
                     "   add %[w], %[w], %[w_step]\n"                                           \
                     "   le lr, 1b\n"                                                           \
                     "2:\n"                                                                     \
                     : [x] "+l"(x), [w] "+l"(w), [e0] "+w"(a->e0), [o0] "+w"(a->o0)             \
                     : [n] "r"(taps), [x_step] "r"(x_step), [w_step] "r"(w_step), [off] "r"(off), \
                       [pred] "r"((uint32_t)pred)                                               \
                     : "q0", "q1", "q2", "lr", "memory")

#define TM_DW_NO_OFFSET(Q) ""
#define TM_DW_ADD_OFFSET(Q) "   vadd.i16 " Q ", " Q ", %[off]\n"

/* Accumulators of 16 channels: e0 = 0,2,4,6; o0 = 1,3,5,7; e1 = 8,10,12,14; o1 = 9,11,13,15. */
typedef struct {
    int32x4_t e0, o0, e1, o1;
} acc16_t;

static void dw_row(const int8_t *x, const int8_t *w, int taps, int x_step, int w_step, int32_t off,
                   int add_offset, int lanes, acc16_t *a) {
    const mve_pred16_t pred = vctp16q((uint32_t)lanes);
    if (lanes == 16) {
        if (add_offset) {
            TM_DW_ROW16(TM_DW_ADD_OFFSET);
        } else {
            TM_DW_ROW16(TM_DW_NO_OFFSET);
        }
    } else if (add_offset) {
        TM_DW_ROW8(TM_DW_ADD_OFFSET);
    } else {
        TM_DW_ROW8(TM_DW_NO_OFFSET);
    }
}

/* Accumulates the window's taps into `lanes` channels (16, or <= 8). */
static void dw_taps(const dw_geom_t *g, const tm_conv_params_t *p, const dw_window_t *win, int lanes,
                    acc16_t *a) {
    const int x_step = p->dilation_w * g->c, y_step = p->dilation_h * g->in_w * g->c, w_row = g->f_w * g->c;
    const int8_t *x = win->in, *w = win->w;
    for (int fy = win->fy0; fy < win->fy1; ++fy, x += y_step, w += w_row) {
        dw_row(x, w, win->fx1 - win->fx0, x_step, g->c, p->input_offset, !win->interior, lanes, a);
    }
}

/* Requantizes 8 channels (even lanes e, odd lanes o; tables at slot s) and
 * stores the first `lanes` of them in channel order. */
static inline __attribute__((always_inline)) void dw_store8(const tm_conv_params_t *p, const tm_mve_chunk_t *q, int s, int32x4_t e, int32x4_t o,
                      int lanes, int8_t *out) {
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    int32x4_t ve = vaddq_n_s32(tm_mve_requantize(e, tm_mve_chunk_at(q, s)), p->output_offset);
    int32x4_t vo = vaddq_n_s32(tm_mve_requantize(o, tm_mve_chunk_at(q, s + 4)), p->output_offset);
    ve = vminq_s32(vmaxq_s32(ve, lo), hi);
    vo = vminq_s32(vmaxq_s32(vo, lo), hi);
    const int16x8_t v = vmovntq_s32(vmovnbq_s32(vdupq_n_s16(0), ve), vo);
    vstrbq_p_s16(out, v, vctp16q((uint32_t)lanes));
}

/* One pixel, channels k .. k+lanes of the chunk (lanes 16, or <= 8). */
static void dw_pixel(const dw_geom_t *g, const tm_conv_params_t *p, const dw_window_t *win,
                     const int32_t *plain_bias, const tm_mve_chunk_t *q, int k, int lanes, int8_t *out) {
    const int32_t *b = (win->interior ? q->eff : plain_bias) + k;
    acc16_t a = {vldrwq_s32(b), vldrwq_s32(b + 4), vldrwq_s32(b + 8), vldrwq_s32(b + 12)};
    dw_window_t w = *win;
    w.in += k, w.w += k;
    dw_taps(g, p, &w, lanes, &a);
    dw_store8(p, q, k, a.e0, a.o0, lanes < 8 ? lanes : 8, out);
    if (lanes > 8) {
        dw_store8(p, q, k + 8, a.e1, a.o1, lanes - 8, out + 8);
    }
}

/* Channel of table slot s: slots of 8 hold the even channels, then the odd ones. */
static int dw_slot_channel(int s) {
    const int r = s & 7;
    return (s & ~7) + (r < 4 ? 2 * r : 2 * (r - 4) + 1);
}

/* Tables of channels c0 .. c0+count in slot order (dw_slot_channel), padded to
 * 16 slots by repeating the last channel: effective biases (mve_common.h), plain
 * biases, multipliers and shifts. */
static void dw_prepare(const dw_geom_t *g, const tm_conv_params_t *p, const int8_t *filter, const int32_t *bias,
                       int c0, int count, tm_mve_chunk_t *q, int32_t *plain_bias) {
    for (int s = 0; s < ((count + 15) & ~15); ++s) {
        const int k = dw_slot_channel(s), c = c0 + (k < count ? k : count - 1);
        int32_t sum = 0;
        for (int t = 0; t < g->f_h * g->f_w; ++t) {
            sum += filter[t * g->c + c];
        }
        plain_bias[s] = bias ? bias[c] : 0;
        q->eff[s] = (int32_t)((uint32_t)plain_bias[s] + (uint32_t)p->input_offset * (uint32_t)sum);
        q->mult[s] = p->out_multiplier[c];
        q->left[s] = p->out_shift[c] > 0 ? p->out_shift[c] : 0;
        q->right[s] = p->out_shift[c] > 0 ? 0 : p->out_shift[c];
    }
}

static void dw_batch(const dw_geom_t *g, const tm_conv_params_t *p, const int8_t *in_b, const int8_t *filter,
                     const int32_t *bias, int8_t *out_b) {
    tm_mve_chunk_t q __attribute__((aligned(16)));
    int32_t plain_bias[TM_MVE_CHANNEL_CHUNK] __attribute__((aligned(16)));
    for (int c0 = 0; c0 < g->c; c0 += TM_MVE_CHANNEL_CHUNK) {
        const int count = g->c - c0 < TM_MVE_CHANNEL_CHUNK ? g->c - c0 : TM_MVE_CHANNEL_CHUNK;
        dw_prepare(g, p, filter, bias, c0, count, &q, plain_bias);
        for (int oy = 0; oy < g->out_h; ++oy) {
            const int y0 = oy * p->stride_h - p->pad_h;
            dw_window_t win;
            tap_range(y0, g->f_h, p->dilation_h, g->in_h, &win.fy0, &win.fy1);
            for (int ox = 0; ox < g->out_w; ++ox) {
                const int x0 = ox * p->stride_w - p->pad_w;
                tap_range(x0, g->f_w, p->dilation_w, g->in_w, &win.fx0, &win.fx1);
                win.interior = win.fy1 - win.fy0 == g->f_h && win.fx1 - win.fx0 == g->f_w;
                win.in = in_b + ((y0 + p->dilation_h * win.fy0) * g->in_w + x0 + p->dilation_w * win.fx0) * g->c + c0;
                win.w = filter + (win.fy0 * g->f_w + win.fx0) * g->c + c0;
                int8_t *out = out_b + (oy * g->out_w + ox) * g->c + c0;
                int k = 0;
                for (; k + 16 <= count; k += 16) {
                    dw_pixel(g, p, &win, plain_bias, &q, k, 16, out + k);
                }
                for (; k < count; k += 8) { /* the rest, 8 channels per pass */
                    dw_pixel(g, p, &win, plain_bias, &q, k, count - k < 8 ? count - k : 8, out + k);
                }
            }
        }
    }
}

tm_status_t tm_kernel_depthwise_conv_2d_mve(const tm_model_t *model, const tm_op_t *op) {
    const tm_conv_params_t *p = (const tm_conv_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *f_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const int8_t *input = (const int8_t *)tm_in_data(model, op, 0);
    const int8_t *filter = (const int8_t *)tm_in_data(model, op, 1);
    const int32_t *bias = (const int32_t *)tm_in_data(model, op, 2);
    int8_t *output = (int8_t *)tm_out_data(model, op, 0);
    if (!in_t || !f_t || in_t->dtype != TM_INT8 || in_t->rank != 4 || f_t->rank != 4 || out_t->rank != 4 ||
        p->depth_multiplier != 1 || out_t->dims[3] != in_t->dims[3] || f_t->dims[3] != out_t->dims[3] || !input ||
        !filter || !output) {
        return TM_DW_FALLBACK(model, op);
    }
    const dw_geom_t g = {
        .in_h = in_t->dims[1], .in_w = in_t->dims[2], .c = in_t->dims[3],
        .out_h = out_t->dims[1], .out_w = out_t->dims[2], .f_h = f_t->dims[1], .f_w = f_t->dims[2],
    };
    for (int b = 0; b < in_t->dims[0]; ++b) {
        dw_batch(&g, p, input + b * g.in_h * g.in_w * g.c, filter, bias, output + b * g.out_h * g.out_w * g.c);
    }
    return TM_OK;
}
