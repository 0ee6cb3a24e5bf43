/*
 * CONV_2D, int8 and int16x8, for cores with the DSP extension (selected by tm_kernel_table.h, see
 * docs/engine.md "Optimized kernels").  Same results as ops/conv_2d.c, bit for bit.
 *
 * int8 3x3 stride-1 layers whose filter the compiler transformed take the Winograd path (conv_2d_winograd.c);
 * else the path over widened weights (conv_2d_wide.c) where it runs; else filters of up to
 * TM_DSP_GEMM_MAX_TAPS taps per output pixel take the im2col + matrix product path (conv_2d_gemm.c); larger
 * ones the direct path below.
 *
 * Direct path, no im2col buffer: for each output row the valid filter rows are found once;
 * for each output pixel the valid filter columns form one range.  With
 * dilation_w == 1 the taps of a filter row that lie in the image are one
 * contiguous run of input bytes (and of filter bytes), so the dot product runs
 * over (valid columns) x in_c elements at once: a 3x3 RGB first layer is runs
 * of 9, a 1x1 pointwise layer runs of in_c.  Two neighbouring output pixels
 * with the same valid range are computed together against two output channels
 * (2 x 2 block: each widened input and weight quadruple is used twice).
 *
 * int16x8 3x3 stride-1 layers over a ReLU's output whose filter the compiler transformed take the Winograd F(2, 3)
 * path (conv_2d_winograd16.c); else int16x8 takes the same im2col path (conv_2d_gemm.c) when it fits; grouped convolutions, and whatever
 * the table (tm_kernel_table.h) does not give this kernel, go to the next kernel of the row.
 */
#include "dsp_conv.h"

/* The stack buffers of the path an op of these dims takes (the wide path is tried first and may
 * decline for a channel's requantization, so both it and the im2col path count). */
int32_t tm_conv_2d_dsp_scratch_bytes(const tm_conv_params_t *p, const tm_conv_dims_t *d, uint8_t dtype) {
    const int32_t taps = d->f_h * d->f_w * d->f_c;
    if (d->f_c != d->in_c || !TM_KERNEL_TAKES(conv_2d, dsp, dtype)) {
        return TM_SCRATCH_NEXT;
    }
    if (dtype == TM_INT16) { /* without p->winograd or for an input with a negative value the im2col path runs */
        if (p->input_offset != 0 || taps > TM_DSP_GEMM_MAX_TAPS) {
            return TM_SCRATCH_NEXT;
        }
        const int32_t gemm16 = tm_dsp_conv_2d_gemm_scratch_bytes(d->in_c, dtype);
        const int32_t wino16 = tm_dsp_conv_2d_winograd16_scratch_bytes(p, d);
        return wino16 > gemm16 ? wino16 : gemm16;
    }
    const int32_t wide = tm_dsp_conv_2d_wide_scratch_bytes(p, d);
    const int32_t gemm = taps <= TM_DSP_GEMM_MAX_TAPS ? tm_dsp_conv_2d_gemm_scratch_bytes(d->in_c, dtype) : 0;
    const int32_t wino = tm_dsp_conv_2d_winograd_scratch_bytes(p, d); /* without p->winograd the others run */
    const int32_t most = wide > gemm ? wide : gemm;                    /* the direct path holds no buffer */
    return wino > most ? wino : most;
}

#if TM_HAVE_DSP
#include "dsp_mac.h"

typedef struct {
    const tm_conv_params_t *p;
    const int8_t *input, *filter;
    const int32_t *bias;
    int in_h, in_w, in_c, out_c, f_h, f_w;
    int fy0, fy1;            /* valid filter rows of the current output row */
    int y0;                  /* input row of filter row 0 */
} conv_ctx_t;

/* Two pixels (input column origins xa, xb, same valid columns [fx0, fx1)) x two channels oc, oc + 1. */
static void block_2x2(const conv_ctx_t *c, const int8_t *in_row_base, int xa, int xb, int fx0, int fx1, int oc,
                      int32_t s[4]) {
    const tm_conv_params_t *p = c->p;
    const int f_stride = c->f_h * c->f_w * c->in_c;
    for (int fy = c->fy0; fy < c->fy1; ++fy) {
        const int8_t *row = in_row_base + (c->y0 + p->dilation_h * fy) * c->in_w * c->in_c;
        const int8_t *w = c->filter + oc * f_stride + (fy * c->f_w) * c->in_c;
        if (p->dilation_w == 1) {
            const int n = (fx1 - fx0) * c->in_c;
            tm_mac_2x2(row + (xa + fx0) * c->in_c, row + (xb + fx0) * c->in_c, w + fx0 * c->in_c,
                       w + f_stride + fx0 * c->in_c, n, p->input_offset, s);
        } else {
            for (int fx = fx0; fx < fx1; ++fx) {
                const int dx = p->dilation_w * fx;
                tm_mac_2x2(row + (xa + dx) * c->in_c, row + (xb + dx) * c->in_c, w + fx * c->in_c,
                           w + f_stride + fx * c->in_c, c->in_c, p->input_offset, s);
            }
        }
    }
}

/* One pixel (column origin x, valid columns [fx0, fx1)) x two channels (or one when two == 0). */
static void block_1x2(const conv_ctx_t *c, const int8_t *in_row_base, int x, int fx0, int fx1, int oc, int two,
                      int32_t s[2]) {
    const tm_conv_params_t *p = c->p;
    const int f_stride = c->f_h * c->f_w * c->in_c;
    for (int fy = c->fy0; fy < c->fy1; ++fy) {
        const int8_t *row = in_row_base + (c->y0 + p->dilation_h * fy) * c->in_w * c->in_c;
        const int8_t *w = c->filter + oc * f_stride + (fy * c->f_w) * c->in_c;
        const int step = p->dilation_w == 1 ? fx1 - fx0 : 1;
        const int n = step * c->in_c;
        for (int fx = fx0; fx < fx1; fx += step) {
            const int8_t *a = row + (x + p->dilation_w * fx) * c->in_c;
            if (two) {
                tm_mac_1x2(a, w + fx * c->in_c, w + f_stride + fx * c->in_c, n, p->input_offset, s);
            } else {
                s[0] = tm_mac_1x1(a, w + fx * c->in_c, n, p->input_offset, s[0]);
            }
        }
    }
}

static inline int32_t bias_of(const conv_ctx_t *c, int oc) { return c->bias ? c->bias[oc] : 0; }

static inline int8_t out_of(const conv_ctx_t *c, int32_t acc, int oc) {
    const tm_conv_params_t *p = c->p;
    return tm_dsp_out_s8(acc, p->out_multiplier[oc], p->out_shift[oc], p->output_offset, p->act_min, p->act_max);
}

tm_status_t tm_kernel_conv_2d_dsp(const tm_model_t *model, const tm_op_t *op) {
    const tm_conv_params_t *p = (const tm_conv_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *f_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const int8_t *input = (const int8_t *)tm_in_data(model, op, 0);
    const int8_t *filter = (const int8_t *)tm_in_data(model, op, 1);
    int8_t *output = (int8_t *)tm_out_data(model, op, 0);
    if (in_t && f_t && in_t->dtype == TM_INT16 && TM_KERNEL_TAKES(conv_2d, dsp, TM_INT16) &&
        out_t->dtype == TM_INT16 && f_t->dtype == TM_INT8 && in_t->rank == 4 && f_t->rank == 4 && out_t->rank == 4 &&
        f_t->dims[3] == in_t->dims[3] && f_t->dims[0] == out_t->dims[3] && p->input_offset == 0 && input && filter &&
        output) {
        const int taps = f_t->dims[1] * f_t->dims[2] * f_t->dims[3];
        if (TM_CONV_WINOGRAD16 && /* builds without the transformed filters need not hold the path */
            tm_dsp_conv_2d_winograd16(p, (const int16_t *)(const void *)input, filter, tm_in_data(model, op, 2),
                                      (int16_t *)(void *)output, in_t->dims, f_t->dims, out_t->dims)) {
            return TM_OK;
        }
        if (tm_dsp_conv_2d_gemm_fits(taps)) {
            tm_dsp_conv_2d_gemm_s16(p, (const int16_t *)(const void *)input, filter, tm_in_data(model, op, 2),
                                    (int16_t *)(void *)output, in_t->dims, f_t->dims, out_t->dims);
            return TM_OK;
        }
    }
    if (!in_t || !f_t || in_t->dtype != TM_INT8 || !TM_KERNEL_TAKES(conv_2d, dsp, TM_INT8) || in_t->rank != 4 ||
        f_t->rank != 4 || out_t->rank != 4 || f_t->dims[3] != in_t->dims[3] || f_t->dims[0] != out_t->dims[3] ||
        !input || !filter || !output) {
        return tm_next_conv_2d_dsp(model, op); /* int16x8 beyond the im2col path, grouped, or malformed */
    }
    if (TM_CONV_WINOGRAD && /* builds without the transformed filters need not hold the path */
        tm_dsp_conv_2d_winograd(p, input, filter, (const int32_t *)tm_in_data(model, op, 2), output, in_t->dims,
                                f_t->dims, out_t->dims)) {
        return TM_OK;
    }
    if (tm_dsp_conv_2d_wide(p, input, filter, (const int32_t *)tm_in_data(model, op, 2), output, in_t->dims, f_t->dims,
                            out_t->dims)) {
        return TM_OK;
    }
    if (tm_dsp_conv_2d_gemm_fits(f_t->dims[1] * f_t->dims[2] * f_t->dims[3])) {
        tm_dsp_conv_2d_gemm(p, input, filter, (const int32_t *)tm_in_data(model, op, 2), output, in_t->dims, f_t->dims,
                            out_t->dims);
        return TM_OK;
    }
    conv_ctx_t c = {
        .p = p, .input = input, .filter = filter, .bias = (const int32_t *)tm_in_data(model, op, 2),
        .in_h = in_t->dims[1], .in_w = in_t->dims[2], .in_c = in_t->dims[3], .out_c = out_t->dims[3],
        .f_h = f_t->dims[1], .f_w = f_t->dims[2],
    };
    const int batches = in_t->dims[0], out_h = out_t->dims[1], out_w = out_t->dims[2], out_c = c.out_c;
    for (int b = 0; b < batches; ++b) {
        const int8_t *in_b = input + b * c.in_h * c.in_w * c.in_c;
        for (int oy = 0; oy < out_h; ++oy) {
            c.y0 = oy * p->stride_h - p->pad_h;
            tm_tap_range(c.y0, c.f_h, p->dilation_h, c.in_h, &c.fy0, &c.fy1);
            int8_t *out_row = output + ((b * out_h + oy) * out_w) * out_c;
            int ox = 0;
            while (ox < out_w) {
                const int xa = ox * p->stride_w - p->pad_w;
                int fx0, fx1;
                tm_tap_range(xa, c.f_w, p->dilation_w, c.in_w, &fx0, &fx1);
                int8_t *out_a = out_row + ox * out_c;
                int pair = 0, fxb0 = 0, fxb1 = 0;
                const int xb = xa + p->stride_w;
                if (ox + 1 < out_w) {
                    tm_tap_range(xb, c.f_w, p->dilation_w, c.in_w, &fxb0, &fxb1);
                    pair = fxb0 == fx0 && fxb1 == fx1;
                }
                if (pair) {
                    int8_t *out_b = out_a + out_c;
                    int oc = 0;
                    for (; oc + 1 < out_c; oc += 2) {
                        const int32_t b0 = bias_of(&c, oc), b1 = bias_of(&c, oc + 1);
                        int32_t s[4] = {b0, b1, b0, b1};
                        block_2x2(&c, in_b, xa, xb, fx0, fx1, oc, s);
                        out_a[oc] = out_of(&c, s[0], oc);
                        out_a[oc + 1] = out_of(&c, s[1], oc + 1);
                        out_b[oc] = out_of(&c, s[2], oc);
                        out_b[oc + 1] = out_of(&c, s[3], oc + 1);
                    }
                    if (oc < out_c) {
                        int32_t sa[2] = {bias_of(&c, oc), 0}, sb[2] = {bias_of(&c, oc), 0};
                        block_1x2(&c, in_b, xa, fx0, fx1, oc, 0, sa);
                        block_1x2(&c, in_b, xb, fx0, fx1, oc, 0, sb);
                        out_a[oc] = out_of(&c, sa[0], oc);
                        out_b[oc] = out_of(&c, sb[0], oc);
                    }
                    ox += 2;
                } else {
                    int oc = 0;
                    for (; oc < out_c; oc += 2) {
                        const int two = oc + 1 < out_c;
                        int32_t s[2] = {bias_of(&c, oc), two ? bias_of(&c, oc + 1) : 0};
                        block_1x2(&c, in_b, xa, fx0, fx1, oc, two, s);
                        out_a[oc] = out_of(&c, s[0], oc);
                        if (two) {
                            out_a[oc + 1] = out_of(&c, s[1], oc + 1);
                        }
                    }
                    ox += 1;
                }
            }
        }
    }
    return TM_OK;
}

#endif /* TM_HAVE_DSP */
