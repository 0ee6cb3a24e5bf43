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
 * next kernel (tm_kernel_table.h).
 */
#include "mve_common.h"

/* Tables of 16 channels in slot order (dw_slot_channel): effective bias (for
 * interior pixels), plain bias (border pixels), multiplier, shifts.  One
 * 320-byte record per group, reached with immediate offsets. */
typedef struct {
    int32_t eff[16], bias[16], mult[16], left[16], right[16];
} dw_group_t;

/* 8-channel layers with stride_w 1: two neighbouring interior pixels fill the
 * 16 lanes (pixel ox+1's input is 8 bytes after pixel ox's at every tap), with
 * the filter duplicated per tap ([w 0..7, w 0..7], `wdup`) and the tables of
 * channels 0..7 repeated in slots 8..15.  Their outputs are 8 bytes apart. */
#define TM_DW_PAIR_TAPS 25 /* wdup: up to 5x5 taps x 16 bytes on the stack */

typedef struct {
    dw_group_t t;
    int8_t wdup[TM_DW_PAIR_TAPS * 16];
} dw_pair_t;

/* dw_batch's tables of a channel chunk and its pair record (declared whether or not the op pairs). */
int32_t tm_depthwise_conv_2d_mve_scratch_bytes(const tm_conv_params_t *p, const tm_conv_dims_t *d, uint8_t dtype) {
    if (!TM_KERNEL_TAKES(depthwise_conv_2d, mve, dtype) || p->depth_multiplier != 1 || d->out_c != d->in_c ||
        d->f_c != d->out_c) {
        return TM_SCRATCH_NEXT;
    }
    return TM_MVE_CHANNEL_CHUNK / 16 * (int32_t)sizeof(dw_group_t) + (int32_t)sizeof(dw_pair_t);
}

#if TM_HAVE_MVE

typedef struct {
    int in_h, in_w, c, out_h, out_w, f_h, f_w;
} dw_geom_t;

/* The in-image taps of one output pixel, as the accumulation loops walk them. */
typedef struct {
    const int8_t *in;   /* input at the first valid tap, channel 0 of the chunk */
    const int8_t *w;    /* filter at the first valid tap, channel 0 of the chunk */
    int rows, taps;     /* valid filter rows, valid taps per row */
    int x_step, w_step; /* from one tap to the next in a row */
    int x_adv, w_adv;   /* from past a row's last valid tap to the next row's first */
    int interior;       /* every tap in the image: the input offset is in the effective bias */
} dw_window_t;

/* Accumulators of 16 channels: e0 = 0,2,4,6; o0 = 1,3,5,7; e1 = 8,10,12,14; o1 = 9,11,13,15. */
typedef struct {
    int32x4_t e0, o0, e1, o1;
} acc16_t;

/* The window's taps into 16 channels: per tap 4 loads (VLDRB.S16), 4 widening
 * multiplies and 4 adds, 16 MACs in 15 instructions with the loop.  OFFSET_ADD
 * adds the input offset to the int16 input lanes (border pixels).  Assembly
 * because GCC 12 runs out of vector registers here (it spills an accumulator
 * on every tap). */
#define TM_DW_TAPS16(OFFSET_ADD)                                                                  \
    __asm__ volatile("3: wls lr, %[taps], 2f\n"                                                  \
                     "1: vldrb.s16 q0, [%[x]]\n"                                                 \
                     "   vldrb.s16 q1, [%[w]]\n" OFFSET_ADD                                      \
                     "   vmullb.s16 q2, q0, q1\n"                                                \
                     "   vadd.i32 %q[e0], %q[e0], q2\n"                                          \
                     "   vmullt.s16 q2, q0, q1\n"                                                \
                     "   vadd.i32 %q[o0], %q[o0], q2\n"                                          \
                     "   vldrb.s16 q0, [%[x], #8]\n"                                             \
                     "   vldrb.s16 q1, [%[w], #8]\n" OFFSET_ADD                                  \
                     "   vmullb.s16 q2, q0, q1\n"                                                \
                     "   vadd.i32 %q[e1], %q[e1], q2\n"                                          \
                     "   vmullt.s16 q2, q0, q1\n"                                                \
                     "   vadd.i32 %q[o1], %q[o1], q2\n"                                          \
                     "   add %[x], %[x], %[x_step]\n"                                            \
                     "   add %[w], %[w], %[w_step]\n"                                            \
                     "   le lr, 1b\n"                                                            \
                     "2: add %[x], %[x], %[x_adv]\n"                                             \
                     "   add %[w], %[w], %[w_adv]\n"                                             \
                     "   subs %[rows], %[rows], #1\n"                                            \
                     "   bne 3b\n"                                                               \
                     : [x] "+l"(x), [w] "+l"(w), [rows] "+r"(rows), [e0] "+w"(a->e0), [o0] "+w"(a->o0), \
                       [e1] "+w"(a->e1), [o1] "+w"(a->o1)                                        \
                     : [taps] "r"(win->taps), [x_step] "r"(win->x_step), [w_step] "r"(win->w_step), \
                       [x_adv] "r"(win->x_adv), [w_adv] "r"(win->w_adv), [off] "r"(off)           \
                     : "q0", "q1", "q2", "lr", "cc", "memory")

/* The same for one filter row and the first `lanes` (<= 8) channels: predicated
 * loads (zeros beyond); the caller walks the rows (too few registers otherwise). */
#define TM_DW_ROW8(OFFSET_ADD)                                                                    \
    __asm__ volatile("   vmsr p0, %[pred]\n"                                                     \
                     "   wls lr, %[taps], 2f\n"                                                  \
                     "1: vpstt\n"                                                                \
                     "   vldrbt.s16 q0, [%[x]]\n"                                                \
                     "   vldrbt.s16 q1, [%[w]]\n" OFFSET_ADD                                     \
                     "   vmullb.s16 q2, q0, q1\n"                                                \
                     "   vadd.i32 %q[e0], %q[e0], q2\n"                                          \
                     "   vmullt.s16 q2, q0, q1\n"                                                \
                     "   vadd.i32 %q[o0], %q[o0], q2\n"                                          \
                     "   add %[x], %[x], %[x_step]\n"                                            \
                     "   add %[w], %[w], %[w_step]\n"                                            \
                     "   le lr, 1b\n"                                                            \
                     "2:\n"                                                                      \
                     : [x] "+l"(x), [w] "+l"(w), [e0] "+w"(a->e0), [o0] "+w"(a->o0)              \
                     : [taps] "r"(win->taps), [x_step] "r"(win->x_step), [w_step] "r"(win->w_step), \
                       [off] "r"(off), [pred] "r"(pred)                                           \
                     : "q0", "q1", "q2", "lr", "memory")

#define TM_DW_NO_OFFSET ""
#define TM_DW_ADD_OFFSET "   vadd.i16 q0, q0, %[off]\n"

/* One filter row of the window into the first `lanes` <= 8 channels (x, w: its first tap). */
static inline __attribute__((always_inline)) void dw_row8(const int8_t *x, const int8_t *w, const dw_window_t *win,
                                                          int32_t off, uint32_t pred, acc16_t *a) {
    if (win->interior) {
        TM_DW_ROW8(TM_DW_NO_OFFSET);
    } else {
        TM_DW_ROW8(TM_DW_ADD_OFFSET);
    }
}

/* Accumulates the window (at least one valid tap) into `lanes` channels (16, or <= 8) from k. */
static inline __attribute__((always_inline)) void dw_taps(const dw_window_t *win, int32_t off, int k, int lanes,
                                                          acc16_t *a) {
    const int8_t *x = win->in + k, *w = win->w + k;
    int rows = win->rows;
    if (lanes == 16) {
        if (win->interior) {
            TM_DW_TAPS16(TM_DW_NO_OFFSET);
        } else {
            TM_DW_TAPS16(TM_DW_ADD_OFFSET);
        }
        return;
    }
    const uint32_t pred = vctp16q((uint32_t)lanes);
    const int x_row = win->taps * win->x_step + win->x_adv, w_row = win->taps * win->w_step + win->w_adv;
    for (; rows > 0; --rows, x += x_row, w += w_row) {
        dw_row8(x, w, win, off, pred, a);
    }
}

/* Requantizes accumulator A with the tables of slots at byte offsets LEFT, MULT,
 * RIGHT of the group record (tm_mve_requantize), adds the output offset, clamps. */
#define TM_DW_RQ(A, LEFT, MULT, RIGHT)                                                            \
    "   vldrw.32 q0, [%[t], #" LEFT "]\n"                                                        \
    "   vshl.s32 " A ", " A ", q0\n"                                                             \
    "   vldrw.32 q0, [%[t], #" MULT "]\n"                                                        \
    "   vqrdmulh.s32 " A ", " A ", q0\n"                                                         \
    "   vldrw.32 q0, [%[t], #" RIGHT "]\n"                                                       \
    "   vand q1, " A ", q0\n"                                                                    \
    "   vshr.s32 q1, q1, #31\n"                                                                  \
    "   vqadd.s32 " A ", " A ", q1\n"                                                            \
    "   vrshl.s32 " A ", " A ", q0\n"                                                            \
    "   vadd.i32 " A ", " A ", %[off]\n"                                                         \
    "   vmax.s32 " A ", " A ", %q[lo]\n"                                                         \
    "   vmin.s32 " A ", " A ", %q[hi]\n"

/* Requantizes 16 channels (52 instructions) and stores them in channel order:
 * VMOVNT puts the odd channels' low halves into the top halves of the even
 * channels' lanes, VSTRB.16 stores the low byte of each. */
static inline __attribute__((always_inline)) void dw_store16(acc16_t *a, const dw_group_t *t, int32_t off,
                                                             const tm_mve_out_t *o, int8_t *out) {
    __asm__ volatile(TM_DW_RQ("%q[e0]", "192", "128", "256") TM_DW_RQ("%q[o0]", "208", "144", "272")
                     TM_DW_RQ("%q[e1]", "224", "160", "288") TM_DW_RQ("%q[o1]", "240", "176", "304")
                     "   vmovnt.i32 %q[e0], %q[o0]\n"
                     "   vmovnt.i32 %q[e1], %q[o1]\n"
                     "   vstrb.16 %q[e0], [%[out]]\n"
                     "   vstrb.16 %q[e1], [%[out], #8]\n"
                     : [e0] "+w"(a->e0), [o0] "+w"(a->o0), [e1] "+w"(a->e1), [o1] "+w"(a->o1)
                     : [t] "r"(t), [out] "l"(out), [off] "r"(off), [lo] "w"(o->lo), [hi] "w"(o->hi)
                     : "q0", "q1", "memory");
}

/* The same for the first `lanes` (<= 8) channels of the group. */
static inline __attribute__((always_inline)) void dw_store8(acc16_t *a, const dw_group_t *t, int32_t off,
                                                            const tm_mve_out_t *o, int lanes, int8_t *out) {
    __asm__ volatile(TM_DW_RQ("%q[e0]", "192", "128", "256") TM_DW_RQ("%q[o0]", "208", "144", "272")
                     "   vmovnt.i32 %q[e0], %q[o0]\n"
                     "   vmsr p0, %[pred]\n"
                     "   vpst\n"
                     "   vstrbt.16 %q[e0], [%[out]]\n"
                     : [e0] "+w"(a->e0), [o0] "+w"(a->o0)
                     : [t] "r"(t), [out] "l"(out), [off] "r"(off), [lo] "w"(o->lo), [hi] "w"(o->hi),
                       [pred] "r"((uint32_t)vctp16q((uint32_t)lanes))
                     : "q0", "q1", "memory");
}

/* One pixel: channels k .. k+16 of the chunk (lanes 16, half 0), or the first
 * `lanes` <= 8 of the lower (half 0) or upper (half 1) 8 channels of the group
 * at k (t: its tables). */
static inline __attribute__((always_inline)) void dw_pixel(const dw_window_t *win, const dw_group_t *t, int half,
                                                           const tm_conv_params_t *p, const tm_mve_out_t *o, int k,
                                                           int lanes, int8_t *out) {
    const int32_t *b = (win->interior ? t->eff : t->bias) + 8 * half;
    const dw_group_t *th = (const dw_group_t *)((const int32_t *)t + 8 * half); /* slot s -> s + 8 */
    acc16_t a = {vldrwq_s32(b), vldrwq_s32(b + 4), vdupq_n_s32(0), vdupq_n_s32(0)};
    if (lanes == 16) {
        a.e1 = vldrwq_s32(b + 8), a.o1 = vldrwq_s32(b + 12);
    }
    if (win->rows > 0 && win->taps > 0) {
        dw_taps(win, p->input_offset, k + 8 * half, lanes, &a);
    }
    if (lanes == 16) {
        dw_store16(&a, th, p->output_offset, o, out);
    } else {
        dw_store8(&a, th, p->output_offset, o, lanes, out);
    }
}

/* Channel of table slot s: slots of 8 hold the even channels, then the odd ones. */
static int dw_slot_channel(int s) {
    const int r = s & 7;
    return (s & ~7) + (r < 4 ? 2 * r : 2 * (r - 4) + 1);
}

/* Tables of channels c0 .. c0+count, 16 slots per record (the last channel
 * repeats past count: computed, never stored). */
static void dw_prepare(const dw_geom_t *g, const tm_conv_params_t *p, const int8_t *filter, const int32_t *bias,
                       int c0, int count, dw_group_t *groups) {
    for (int s = 0; s < ((count + 15) & ~15); ++s) {
        const int k = (s & ~15) + dw_slot_channel(s & 15), c = c0 + (k < count ? k : count - 1);
        int32_t sum = 0;
        for (int tap = 0; tap < g->f_h * g->f_w; ++tap) {
            sum += filter[tap * g->c + c];
        }
        dw_group_t *t = &groups[s / 16];
        const int i = s % 16, shift = p->out_shift[c];
        t->bias[i] = bias ? bias[c] : 0;
        t->eff[i] = (int32_t)((uint32_t)t->bias[i] + (uint32_t)p->input_offset * (uint32_t)sum);
        t->mult[i] = p->out_multiplier[c];
        t->left[i] = shift > 0 ? shift : 0;
        t->right[i] = shift > 0 ? 0 : shift;
    }
}

/* The valid taps of the pixel whose window starts at (y0, x0) (rows fy0 .. fy1 given). */
static void dw_window(const dw_geom_t *g, const tm_conv_params_t *p, const int8_t *in_b, const int8_t *filter,
                      int y0, int fy0, int fy1, int x0, int c0, dw_window_t *win) {
    int fx0, fx1;
    tm_tap_range(x0, g->f_w, p->dilation_w, g->in_w, &fx0, &fx1);
    win->rows = fy1 - fy0, win->taps = fx1 - fx0;
    win->interior = win->rows == g->f_h && win->taps == g->f_w;
    win->x_step = p->dilation_w * g->c, win->w_step = g->c;
    win->x_adv = p->dilation_h * g->in_w * g->c - win->taps * win->x_step;
    win->w_adv = g->f_w * g->c - win->taps * g->c;
    win->in = in_b + ((y0 + p->dilation_h * fy0) * g->in_w + x0 + p->dilation_w * fx0) * g->c + c0;
    win->w = filter + (fy0 * g->f_w + fx0) * g->c + c0;
}

static int dw_pairs_apply(const dw_geom_t *g, const tm_conv_params_t *p) {
    return g->c == 8 && p->stride_w == 1 && g->f_h * g->f_w <= TM_DW_PAIR_TAPS;
}

static void dw_pair_prepare(const dw_geom_t *g, const int8_t *filter, const dw_group_t *t8, dw_pair_t *pair) {
    pair->t = *t8;
    for (int s = 0; s < 8; ++s) {
        pair->t.eff[s + 8] = t8->eff[s], pair->t.bias[s + 8] = t8->bias[s], pair->t.mult[s + 8] = t8->mult[s];
        pair->t.left[s + 8] = t8->left[s], pair->t.right[s + 8] = t8->right[s];
    }
    for (int tap = 0; tap < g->f_h * g->f_w; ++tap) {
        for (int k = 0; k < 16; ++k) {
            pair->wdup[tap * 16 + k] = filter[tap * 8 + (k & 7)];
        }
    }
}

/* Output pixels of row oy; in pairs where both windows lie inside the image. */
static void dw_row_pixels(const dw_geom_t *g, const tm_conv_params_t *p, const int8_t *in_b, const int8_t *filter,
                          const dw_group_t *groups, const dw_pair_t *pair, const tm_mve_out_t *o, int c0, int count,
                          int oy, int8_t *out_b) {
    const int y0 = oy * p->stride_h - p->pad_h, x_span = p->dilation_w * (g->f_w - 1);
    int fy0, fy1;
    tm_tap_range(y0, g->f_h, p->dilation_h, g->in_h, &fy0, &fy1);
    for (int ox = 0; ox < g->out_w; ++ox) {
        const int x0 = ox * p->stride_w - p->pad_w;
        dw_window_t win;
        dw_window(g, p, in_b, filter, y0, fy0, fy1, x0, c0, &win);
        int8_t *out = out_b + (oy * g->out_w + ox) * g->c + c0;
        if (pair && win.interior && ox + 1 < g->out_w && x0 + 1 + x_span < g->in_w) {
            win.w = pair->wdup, win.w_step = 16, win.w_adv = 0;
            dw_pixel(&win, &pair->t, 0, p, o, 0, 16, out);
            ++ox;
            continue;
        }
        int k = 0;
        for (; k + 16 <= count; k += 16) {
            dw_pixel(&win, &groups[k / 16], 0, p, o, k, 16, out + k);
        }
        if (k < count) { /* the last 1-15 channels, 8 per pass */
            dw_pixel(&win, &groups[k / 16], 0, p, o, k, count - k < 8 ? count - k : 8, out + k);
            if (count - k > 8) {
                dw_pixel(&win, &groups[k / 16], 1, p, o, k, count - k - 8, out + k + 8);
            }
        }
    }
}

static void dw_batch(const dw_geom_t *g, const tm_conv_params_t *p, const int8_t *in_b, const int8_t *filter,
                     const int32_t *bias, int8_t *out_b) {
    dw_group_t groups[TM_MVE_CHANNEL_CHUNK / 16] __attribute__((aligned(16)));
    dw_pair_t pair __attribute__((aligned(16)));
    const tm_mve_out_t o = tm_mve_out(p->output_offset, p->act_min, p->act_max);
    for (int c0 = 0; c0 < g->c; c0 += TM_MVE_CHANNEL_CHUNK) {
        const int count = g->c - c0 < TM_MVE_CHANNEL_CHUNK ? g->c - c0 : TM_MVE_CHANNEL_CHUNK;
        dw_prepare(g, p, filter, bias, c0, count, groups);
        const int pairs = dw_pairs_apply(g, p);
        if (pairs) {
            dw_pair_prepare(g, filter, &groups[0], &pair);
        }
        for (int oy = 0; oy < g->out_h; ++oy) {
            dw_row_pixels(g, p, in_b, filter, groups, pairs ? &pair : 0, &o, c0, count, oy, out_b);
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
    if (!in_t || !f_t || !TM_KERNEL_TAKES(depthwise_conv_2d, mve, in_t->dtype) || in_t->rank != 4 || f_t->rank != 4 ||
        out_t->rank != 4 || p->depth_multiplier != 1 || out_t->dims[3] != in_t->dims[3] ||
        f_t->dims[3] != out_t->dims[3] || !input || !filter || !output) {
        return tm_next_depthwise_conv_2d_mve(model, op);
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

#endif /* TM_HAVE_MVE */
