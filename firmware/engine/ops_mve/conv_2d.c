/*
 * CONV_2D, int8, on Helium.  Same results as ops/conv_2d.c, bit for bit.
 *
 * Each output pixel's receptive field is one contiguous patch of
 * filter_h x filter_w x in_c bytes, the layout of one filter (OHWI): the input
 * pixel itself for a 1x1 filter, else an im2col copy on the stack with the taps
 * outside the image set to the input zero point (mve_common.h explains why that
 * and the effective bias give the portable accumulator).  Four output channels
 * share each 16-byte load of the patch (four VMLADAVA, 64 MACs, tm_mve_dot4), and
 * the four results are requantized together (tm_mve_requant4).  1x1 layers with
 * at most 16 input channels run whole output rows in one loop (row_1x1_small).
 * Grouped convolutions and patches larger than TM_MVE_PATCH_BYTES go to the next kernel
 * (tm_kernel_table.h: the DSP one, else the portable one).
 *
 * int16x8 (int64 bias, input offset 0) takes the same loop over an int16 patch (TM_MVE_PATCH_BYTES / 2
 * taps): VLDRB.S16 widens 8 weights per load and VMLADAVA.S16 takes 8 int16 products, so four channels
 * cost 10 instructions per 32 MACs, twice int8's per MAC, the natural ratio (conv_s16_fits: a 32-bit
 * sum is exact).  TFLite's 64-bit requantization of such a sum is one VRMULH (conv_s16_table), four
 * channels at a time.  An int32 bias, or a channel whose sums or shift do not fit, goes to the next kernel.
 */
#include "mve_common.h"
#include "ops_dsp/dsp_conv.h" /* tm_dsp_s16_channels_fit: the Helium cores have the DSP extension */

/* 1x1 layers with at most 16 input channels run whole output rows (row_1x1_small). */
#define TM_MVE_SMALL_1X1 16
#define TM_MVE_SMALL_1X1_FILTER_BYTES 64 /* the four filter rows of a channel group, zero-padded */

/* A 1x1 filter without padding whose windows all lie in the input: the patch is the pixel itself.  A macro,
 * as the kernel's own expression was (an inline function changed its code generation). */
#define CONV_ONE_BY_ONE(p, f_h, f_w, in_h, in_w, out_h, out_w)                                        \
    ((f_h) == 1 && (f_w) == 1 && (p)->pad_h == 0 && (p)->pad_w == 0 &&                                \
     ((out_h) - 1) * (p)->stride_h < (in_h) && ((out_w) - 1) * (p)->stride_w < (in_w))

/* The tables of a channel chunk, with the 1x1 row loop's filter buffer or the im2col patch. */
int32_t tm_conv_2d_mve_scratch_bytes(const tm_conv_params_t *p, const tm_conv_dims_t *d, uint8_t dtype) {
    const int one_by_one = CONV_ONE_BY_ONE(p, d->f_h, d->f_w, d->in_h, d->in_w, d->out_h, d->out_w);
    const int32_t tables = TM_MVE_CHANNEL_CHUNK / 4 * (int32_t)sizeof(tm_mve_group_t);
    if (!TM_KERNEL_TAKES(conv_2d, mve, dtype) || d->f_c != d->in_c) {
        return TM_SCRATCH_NEXT;
    }
    if (dtype == TM_INT16) { /* conv_batch_s16's tables and patch; it may hand the op on (conv_s16_fits) */
        if (2 * d->f_h * d->f_w * d->f_c > TM_MVE_PATCH_BYTES) {
            return TM_SCRATCH_NEXT;
        }
        const int32_t next = tm_conv_2d_dsp_scratch_bytes(p, d, dtype);
        return tables + TM_MVE_PATCH_BYTES > next ? tables + TM_MVE_PATCH_BYTES : next;
    }
    if (!one_by_one && d->f_h * d->f_w * d->f_c > TM_MVE_PATCH_BYTES) {
        return TM_SCRATCH_NEXT;
    }
    return tables + (one_by_one && d->in_c <= TM_MVE_SMALL_1X1 ? TM_MVE_SMALL_1X1_FILTER_BYTES : TM_MVE_PATCH_BYTES);
}

#if TM_HAVE_MVE

typedef struct {
    int in_h, in_w, in_c, out_h, out_w, out_c, f_h, f_w, patch;
    int8_t pad_value; /* the input zero point: x + input_offset = 0 */
} conv_geom_t;

/* One filter row of taps starting at input column x0 (row = input row y). */
static void im2col_row(const conv_geom_t *g, const tm_conv_params_t *p, const int8_t *row, int x0, int8_t *dst) {
    const int c = g->in_c;
    if (p->dilation_w == 1) {
        int fx0, fx1;
        tm_tap_range(x0, g->f_w, 1, g->in_w, &fx0, &fx1);
        tm_mve_fill(dst, g->pad_value, fx0 * c);
        tm_mve_copy(dst + fx0 * c, row + (x0 + fx0) * c, (fx1 - fx0) * c);
        tm_mve_fill(dst + fx1 * c, g->pad_value, (g->f_w - fx1) * c);
        return;
    }
    for (int fx = 0; fx < g->f_w; ++fx, dst += c) {
        const int x = x0 + p->dilation_w * fx;
        if (x >= 0 && x < g->in_w) {
            tm_mve_copy(dst, row + x * c, c);
        } else {
            tm_mve_fill(dst, g->pad_value, c);
        }
    }
}

/* The patch of the output pixel whose window starts at (y0, x0): a pointer into
 * the input when it is one in-image pixel (1x1 filter), else built in `buf`. */
static const int8_t *patch_at(const conv_geom_t *g, const tm_conv_params_t *p, const int8_t *in_b, int y0, int x0,
                              int8_t *buf) {
    const int row_bytes = g->f_w * g->in_c, in_row_bytes = g->in_w * g->in_c;
    const int inside = y0 >= 0 && y0 + p->dilation_h * (g->f_h - 1) < g->in_h && x0 >= 0 &&
                       x0 + p->dilation_w * (g->f_w - 1) < g->in_w;
    if (inside && g->f_h == 1 && g->f_w == 1) {
        return in_b + y0 * in_row_bytes + x0 * g->in_c;
    }
    if (inside && p->dilation_w == 1) { /* the common case: whole filter rows */
        const int8_t *src = in_b + y0 * in_row_bytes + x0 * g->in_c;
        for (int fy = 0; fy < g->f_h; ++fy) {
            tm_mve_copy(buf + fy * row_bytes, src + fy * p->dilation_h * in_row_bytes, row_bytes);
        }
        return buf;
    }
    for (int fy = 0; fy < g->f_h; ++fy) {
        const int y = y0 + p->dilation_h * fy;
        if (y >= 0 && y < g->in_h) {
            im2col_row(g, p, in_b + y * in_row_bytes, x0, buf + fy * row_bytes);
        } else {
            tm_mve_fill(buf + fy * row_bytes, g->pad_value, row_bytes);
        }
    }
    return buf;
}

/* Tables of channels c0 .. c0+count, grouped by four (lanes past the last
 * channel repeat it: computed, never stored): effective bias (bias +
 * input_offset * sum of the filter, wrapping int32), multiplier, shifts. */
static void chunk_prepare(const conv_geom_t *g, const tm_conv_params_t *p, const int8_t *filter,
                          const int32_t *bias, int c0, int count, tm_mve_group_t *groups) {
    for (int k = 0; k < ((count + 3) & ~3); ++k) {
        const int c = c0 + (k < count ? k : count - 1);
        const int32_t s = tm_mve_sum_s8(filter + c * g->patch, g->patch), shift = p->out_shift[c];
        tm_mve_group_t *t = &groups[k / 4];
        t->eff[k % 4] = (int32_t)((uint32_t)(bias ? bias[c] : 0) + (uint32_t)p->input_offset * (uint32_t)s);
        t->mult[k % 4] = p->out_multiplier[c];
        t->left[k % 4] = shift > 0 ? shift : 0;
        t->right[k % 4] = shift > 0 ? 0 : shift;
    }
}

/* The last 1-3 channels of a pixel (w: the first one's filter). */
static void pixel_tail(int n, const int8_t *patch, const int8_t *w, const tm_mve_group_t *t, tm_mve_out_t o,
                       int lanes, int8_t *out) {
    const int8_t *rows[4] = {w, lanes > 1 ? w + n : w, lanes > 2 ? w + 2 * n : w, w};
    const int32x4_t acc = vaddq_s32(tm_mve_dot_1x4(patch, rows, n), vldrwq_s32(t->eff));
    const tm_mve_quant_t q = {vldrwq_s32(t->mult), vldrwq_s32(t->left), vldrwq_s32(t->right)};
    const int32x4_t v = vaddq_s32(tm_mve_requantize(acc, q), o.offset);
    vstrbq_p_s32(out, vminq_s32(vmaxq_s32(v, o.lo), o.hi), vctp32q((uint32_t)lanes));
}

/* Output channels c0 .. c0+count of one pixel from its patch (w: channel c0's filter). */
static void pixel_channels(int n, const int8_t *patch, const int8_t *w, const tm_mve_group_t *t,
                           const tm_mve_out_t *o, int count, int8_t *out) {
    int c = 0;
    for (; c + 4 <= count; c += 4, w += 4 * n, ++t) {
        int32_t a[4];
        tm_mve_dot4(patch, w, w + n, w + 2 * n, w + 3 * n, n, a);
        tm_mve_requant4(a, t, o, out + c);
    }
    if (c < count) {
        pixel_tail(n, patch, w, t, *o, count - c, out + c);
    }
}

/* 1x1 layers with at most 16 input channels (one vector per pixel): the four
 * filter rows of a channel group are copied once, zero-padded, to a 64-byte
 * buffer reached with immediate offsets, and one assembly loop runs along an
 * output row: per pixel one predicated load of the input, four VMLADAV, the
 * requantization (tm_mve_requant4) and a 4-byte store, 32 instructions. */

static void row_1x1_small(const int8_t *x, int x_step, int pixels, const int8_t *wbuf, const tm_mve_group_t *t,
                          const tm_mve_out_t *o, uint32_t pred, int8_t *out, int out_step) {
    int32_t a0, a1, a2, a3;
    __asm__ volatile(
        "   vmsr p0, %[pred]\n"
        "   wls lr, %[n], 2f\n"
        "1: vpst\n"
        "   vldrbt.8 q0, [%[x]]\n"
        "   add %[x], %[x], %[x_step]\n"
        "   vldrb.8 q1, [%[wb]]\n"
        "   vmladav.s8 %[a0], q0, q1\n"
        "   vldrb.8 q1, [%[wb], #16]\n"
        "   vmladav.s8 %[a1], q0, q1\n"
        "   vldrb.8 q1, [%[wb], #32]\n"
        "   vmladav.s8 %[a2], q0, q1\n"
        "   vldrb.8 q1, [%[wb], #48]\n"
        "   vmladav.s8 %[a3], q0, q1\n"
        TM_MVE_REQUANT4_ASM
        "   add %[out], %[out], %[out_step]\n"
        "   le lr, 1b\n"
        "2:\n"
        : [x] "+r"(x), [out] "+l"(out), [a0] "=&Te"(a0), [a1] "=&Te"(a1), [a2] "=&Te"(a2), [a3] "=&Te"(a3)
        : [n] "r"(pixels), [x_step] "r"(x_step), [wb] "r"(wbuf), [t] "r"(t), [pred] "r"(pred),
          [out_step] "r"(out_step), [off] "w"(o->offset), [lo] "w"(o->lo), [hi] "w"(o->hi)
        : "q0", "q1", "q2", "lr", "memory");
}

/* The channels c0 .. c0+count of a 1x1 layer (no padding) with in_c <= TM_MVE_SMALL_1X1. */
static void conv_1x1_small(const conv_geom_t *g, const tm_conv_params_t *p, const int8_t *in_b,
                           const int8_t *filter, const tm_mve_group_t *groups, const tm_mve_out_t *o, int c0,
                           int count, int8_t *out_b) {
    int8_t wbuf[TM_MVE_SMALL_1X1_FILTER_BYTES] __attribute__((aligned(16)));
    const uint32_t pred = vctp8q((uint32_t)g->in_c);
    const int x_step = p->stride_w * g->in_c, row_step = p->stride_h * g->in_w * g->in_c;
    int c = 0;
    for (; c + 4 <= count; c += 4) {
        for (int k = 0; k < 4; ++k) {
            vstrbq_s8(wbuf + 16 * k, vldrbq_z_s8(filter + (c0 + c + k) * g->in_c, (mve_pred16_t)pred));
        }
        for (int oy = 0; oy < g->out_h; ++oy) {
            row_1x1_small(in_b + oy * row_step, x_step, g->out_w, wbuf, &groups[c / 4], o, pred,
                          out_b + oy * g->out_w * g->out_c + c0 + c, g->out_c);
        }
    }
    if (c < count) { /* the last 1-3 channels */
        for (int px = 0; px < g->out_h * g->out_w; ++px) {
            const int oy = px / g->out_w, ox = px % g->out_w;
            pixel_tail(g->in_c, in_b + oy * row_step + ox * x_step, filter + (c0 + c) * g->in_c, &groups[c / 4], *o,
                       count - c, out_b + px * g->out_c + c0 + c);
        }
    }
}

static void conv_batch_1x1_small(const conv_geom_t *g, const tm_conv_params_t *p, const int8_t *in_b,
                                 const int8_t *filter, const int32_t *bias, int8_t *out_b) {
    tm_mve_group_t groups[TM_MVE_CHANNEL_CHUNK / 4] __attribute__((aligned(16)));
    const tm_mve_out_t o = tm_mve_out(p->output_offset, p->act_min, p->act_max);
    for (int c0 = 0; c0 < g->out_c; c0 += TM_MVE_CHANNEL_CHUNK) {
        const int count = g->out_c - c0 < TM_MVE_CHANNEL_CHUNK ? g->out_c - c0 : TM_MVE_CHANNEL_CHUNK;
        chunk_prepare(g, p, filter, bias, c0, count, groups);
        conv_1x1_small(g, p, in_b, filter, groups, &o, c0, count, out_b);
    }
}

static void conv_batch(const conv_geom_t *g, const tm_conv_params_t *p, const int8_t *in_b, const int8_t *filter,
                       const int32_t *bias, int8_t *out_b) {
    int8_t patch_buf[TM_MVE_PATCH_BYTES] __attribute__((aligned(16)));
    tm_mve_group_t groups[TM_MVE_CHANNEL_CHUNK / 4] __attribute__((aligned(16)));
    const tm_mve_out_t o = tm_mve_out(p->output_offset, p->act_min, p->act_max);
    for (int c0 = 0; c0 < g->out_c; c0 += TM_MVE_CHANNEL_CHUNK) {
        const int count = g->out_c - c0 < TM_MVE_CHANNEL_CHUNK ? g->out_c - c0 : TM_MVE_CHANNEL_CHUNK;
        chunk_prepare(g, p, filter, bias, c0, count, groups);
        for (int oy = 0; oy < g->out_h; ++oy) {
            const int y0 = oy * p->stride_h - p->pad_h;
            int8_t *out_row = out_b + oy * g->out_w * g->out_c + c0;
            for (int ox = 0; ox < g->out_w; ++ox) {
                const int8_t *patch = patch_at(g, p, in_b, y0, ox * p->stride_w - p->pad_w, patch_buf);
                pixel_channels(g->patch, patch, filter + c0 * g->patch, groups, &o, count, out_row + ox * g->out_c);
            }
        }
    }
}

/* int16x8: dot products of one int16 row x (n values) with four int8 weight rows into a[0..3], as
 * tm_mve_dot4 (mve_common.h) with VLDRB.S16 widening 8 weights per load: 10 instructions per 32 MACs. */
static inline __attribute__((always_inline)) void dot4_s16(const int16_t *x, const int8_t *w0, const int8_t *w1,
                                                          const int8_t *w2, const int8_t *w3, int n, int32_t a[4]) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    __asm__ volatile(TM_MVE_DOT4_ASM("16", "vldrh.16", "vldrb.s16", "8", "vmladava.s16")
        : [x] "+r"(x), [w0] "+r"(w0), [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3),
          [a0] "+Te"(a0), [a1] "+Te"(a1), [a2] "+Te"(a2), [a3] "+Te"(a3)
        : [n] "r"(n)
        : "q0", "q1", "q2", "lr", "memory");
    a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3;
}

/*
 * Whether every channel of an int16x8 op fits this kernel: an int64 bias (TFLite's 64-bit accumulator),
 * |bias| + 32768 * sum |w| < 2^31 (the 32-bit sums of VMLADAVA.S16 and sum + bias are then exact), and
 * a total shift r = 15 - shift of 16..32, for conv_s16_table's VRMULH.
 */
static int conv_s16_fits(const tm_conv_params_t *p, const int8_t *filter, const int64_t *bias, int patch,
                         int out_c) {
    return p->acc64 && p->input_offset == 0 && tm_dsp_s16_channels_fit(p, filter, patch, bias, out_c, 16, 32);
}

/*
 * Tables of channels c0 .. c0+count (lanes past the last repeat it): eff = the bias (int32, by
 * conv_s16_fits), mult = M' = reduced * 2^(32 - r) with TFLite's 16-bit multiplier `reduced` (< 2^15, so M'
 * < 2^31 for r >= 16).  TFLite's (acc * reduced + 2^(r-1)) >> r is then VRMULH(acc, M') =
 * (acc * M' + 2^31) >> 32: numerator and denominator scaled by 2^(32 - r); |result| < 2^30, so TFLite's
 * cast to int32 changes nothing.
 */
static void conv_s16_table(const tm_conv_params_t *p, const int64_t *bias, int c0, int count,
                           tm_mve_group_t *groups) {
    for (int k = 0; k < ((count + 3) & ~3); ++k) {
        const int c = c0 + (k < count ? k : count - 1);
        const int32_t m = p->out_multiplier[c], r = 15 - p->out_shift[c];
        const int32_t reduced = m < 0x7FFF0000 ? (m + (1 << 15)) >> 16 : 0x7FFF;
        tm_mve_group_t *t = &groups[k / 4];
        t->eff[k % 4] = bias ? (int32_t)bias[c] : 0;
        t->mult[k % 4] = (int32_t)((uint32_t)reduced << (32 - r));
        t->left[k % 4] = 0, t->right[k % 4] = 0;
    }
}

/* Output channels c0 .. c0+count of one pixel from its int16 patch (w: channel c0's filter). */
static void pixel_channels_s16(int n, const int16_t *patch, const int8_t *w, const tm_mve_group_t *t,
                               const tm_mve_out_t *o, int count, int16_t *out) {
    for (int c = 0; c < count; c += 4, w += 4 * n, ++t) {
        const int lanes = count - c < 4 ? count - c : 4;
        int32_t a[4] __attribute__((aligned(16)));
        dot4_s16(patch, w, lanes > 1 ? w + n : w, lanes > 2 ? w + 2 * n : w, lanes > 3 ? w + 3 * n : w, n, a);
        int32x4_t v = vrmulhq_s32(vaddq_s32(vldrwq_s32(a), vldrwq_s32(t->eff)), vldrwq_s32(t->mult));
        v = vminq_s32(vmaxq_s32(vaddq_s32(v, o->offset), o->lo), o->hi);
        vstrhq_p_s32(out + c, v, vctp32q((uint32_t)lanes));
    }
}

static void conv_batch_s16(const conv_geom_t *g, const tm_conv_params_t *p, const int16_t *in_b,
                           const int8_t *filter, const int64_t *bias, int16_t *out_b) {
    int8_t patch_buf[TM_MVE_PATCH_BYTES] __attribute__((aligned(16)));
    tm_mve_group_t groups[TM_MVE_CHANNEL_CHUNK / 4] __attribute__((aligned(16)));
    const tm_mve_out_t o = tm_mve_out(p->output_offset, p->act_min, p->act_max);
    const int taps = g->patch / 2; /* g counts bytes: 2 per int16 value */
    for (int c0 = 0; c0 < g->out_c; c0 += TM_MVE_CHANNEL_CHUNK) {
        const int count = g->out_c - c0 < TM_MVE_CHANNEL_CHUNK ? g->out_c - c0 : TM_MVE_CHANNEL_CHUNK;
        conv_s16_table(p, bias, c0, count, groups);
        for (int oy = 0; oy < g->out_h; ++oy) {
            const int y0 = oy * p->stride_h - p->pad_h;
            int16_t *out_row = out_b + oy * g->out_w * g->out_c + c0;
            for (int ox = 0; ox < g->out_w; ++ox) {
                const int8_t *patch = patch_at(g, p, (const int8_t *)in_b, y0, ox * p->stride_w - p->pad_w, patch_buf);
                pixel_channels_s16(taps, (const int16_t *)(const void *)patch, filter + c0 * taps, groups, &o, count,
                                   out_row + ox * g->out_c);
            }
        }
    }
}

/* int16x8: the kernel's int16 path, or the next kernel where it does not fit. */
static tm_status_t conv_2d_mve_s16(const tm_model_t *model, const tm_op_t *op, const tm_conv_params_t *p,
                                   const tm_tensor_t *in_t, const tm_tensor_t *f_t, const tm_tensor_t *out_t) {
    const int16_t *input = (const int16_t *)tm_in_data(model, op, 0);
    const int8_t *filter = (const int8_t *)tm_in_data(model, op, 1);
    const int64_t *bias = (const int64_t *)tm_in_data(model, op, 2);
    int16_t *output = (int16_t *)tm_out_data(model, op, 0);
    const int taps = f_t->dims[1] * f_t->dims[2] * f_t->dims[3];
    if (!input || !filter || !output || out_t->dtype != TM_INT16 || f_t->dtype != TM_INT8 ||
        2 * taps > TM_MVE_PATCH_BYTES || !conv_s16_fits(p, filter, bias, taps, out_t->dims[3])) {
        return tm_next_conv_2d_mve(model, op);
    }
    /* the geometry in bytes (2 per value), so that patch_at builds the int16 patch; padding taps are 0 */
    const conv_geom_t g = {
        .in_h = in_t->dims[1], .in_w = in_t->dims[2], .in_c = 2 * in_t->dims[3],
        .out_h = out_t->dims[1], .out_w = out_t->dims[2], .out_c = out_t->dims[3],
        .f_h = f_t->dims[1], .f_w = f_t->dims[2], .patch = 2 * taps, .pad_value = 0,
    };
    for (int b = 0; b < in_t->dims[0]; ++b) {
        conv_batch_s16(&g, p, input + b * in_t->dims[1] * in_t->dims[2] * in_t->dims[3], filter, bias,
                       output + b * g.out_h * g.out_w * g.out_c);
    }
    return TM_OK;
}

tm_status_t tm_kernel_conv_2d_mve(const tm_model_t *model, const tm_op_t *op) {
    const tm_conv_params_t *p = (const tm_conv_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *f_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const int8_t *input = (const int8_t *)tm_in_data(model, op, 0);
    const int8_t *filter = (const int8_t *)tm_in_data(model, op, 1);
    const int32_t *bias = (const int32_t *)tm_in_data(model, op, 2);
    int8_t *output = (int8_t *)tm_out_data(model, op, 0);
    if (!in_t || !f_t || !TM_KERNEL_TAKES(conv_2d, mve, in_t->dtype) || in_t->rank != 4 || f_t->rank != 4 ||
        out_t->rank != 4 || f_t->dims[3] != in_t->dims[3] || f_t->dims[0] != out_t->dims[3] || !input || !filter ||
        !output) {
        return tm_next_conv_2d_mve(model, op);
    }
    if (in_t->dtype == TM_INT16) {
        return conv_2d_mve_s16(model, op, p, in_t, f_t, out_t);
    }
    const conv_geom_t g = {
        .in_h = in_t->dims[1], .in_w = in_t->dims[2], .in_c = in_t->dims[3],
        .out_h = out_t->dims[1], .out_w = out_t->dims[2], .out_c = out_t->dims[3],
        .f_h = f_t->dims[1], .f_w = f_t->dims[2], .patch = f_t->dims[1] * f_t->dims[2] * f_t->dims[3],
        .pad_value = (int8_t)-p->input_offset,
    };
    const int one_by_one = CONV_ONE_BY_ONE(p, g.f_h, g.f_w, g.in_h, g.in_w, g.out_h, g.out_w);
    if (!one_by_one && g.patch > TM_MVE_PATCH_BYTES) {
        return tm_next_conv_2d_mve(model, op);
    }
    for (int b = 0; b < in_t->dims[0]; ++b) {
        const int8_t *in_b = input + b * g.in_h * g.in_w * g.in_c;
        int8_t *out_b = output + b * g.out_h * g.out_w * g.out_c;
        if (one_by_one && g.in_c <= TM_MVE_SMALL_1X1) {
            conv_batch_1x1_small(&g, p, in_b, filter, bias, out_b);
        } else {
            conv_batch(&g, p, in_b, filter, bias, out_b);
        }
    }
    return TM_OK;
}

#endif /* TM_HAVE_MVE */
