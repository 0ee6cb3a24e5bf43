/*
 * CONV_2D, int8, on Helium.  Same results as ops/conv_2d.c, bit for bit.
 *
 * As ops_dsp/conv_2d.c, no im2col: the valid filter rows of an output row and
 * the valid columns of an output pixel are found once, and with dilation_w == 1
 * the valid taps of a filter row are one contiguous run of (columns x in_c)
 * bytes of input and of filter.  Each run is one tail-predicated vector loop
 * over two output channels (16 MACs per VMLADAVA); the input offset is applied
 * through the sum of the weights of the same taps (mve_common.h).  Grouped
 * convolutions, int16x8 and runs shorter than one vector (e.g. in_c 1) go to the
 * DSP (or portable) kernel.
 */
#include "mve_common.h"

#if defined(TM_OPT_DSP)
#define TM_CONV_FALLBACK tm_kernel_conv_2d_dsp
#else
#define TM_CONV_FALLBACK tm_kernel_conv_2d
#endif

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

tm_status_t tm_kernel_conv_2d_mve(const tm_model_t *model, const tm_op_t *op) {
    const tm_conv_params_t *p = (const tm_conv_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *f_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const int8_t *input = (const int8_t *)tm_in_data(model, op, 0);
    const int8_t *filter = (const int8_t *)tm_in_data(model, op, 1);
    const int32_t *bias = (const int32_t *)tm_in_data(model, op, 2);
    int8_t *output = (int8_t *)tm_out_data(model, op, 0);
    if (!in_t || !f_t || in_t->dtype != TM_INT8 || in_t->rank != 4 || f_t->rank != 4 || out_t->rank != 4 ||
        f_t->dims[3] != in_t->dims[3] || f_t->dims[0] != out_t->dims[3] || !input || !filter || !output) {
        return TM_CONV_FALLBACK(model, op);
    }
    const int batches = in_t->dims[0], in_h = in_t->dims[1], in_w = in_t->dims[2], in_c = in_t->dims[3];
    const int out_h = out_t->dims[1], out_w = out_t->dims[2], out_c = out_t->dims[3];
    const int f_h = f_t->dims[1], f_w = f_t->dims[2], f_stride = f_h * f_w * in_c;
#if defined(TM_OPT_DSP)
    if ((p->dilation_w == 1 ? f_w * in_c : in_c) < 16) {
        return tm_kernel_conv_2d_dsp(model, op); /* runs shorter than a vector: SMLAD does better */
    }
#endif
    for (int b = 0; b < batches; ++b) {
        const int8_t *in_b = input + b * in_h * in_w * in_c;
        for (int oy = 0; oy < out_h; ++oy) {
            const int y0 = oy * p->stride_h - p->pad_h;
            int fy0, fy1;
            tap_range(y0, f_h, p->dilation_h, in_h, &fy0, &fy1);
            for (int ox = 0; ox < out_w; ++ox) {
                const int x0 = ox * p->stride_w - p->pad_w;
                int fx0, fx1;
                tap_range(x0, f_w, p->dilation_w, in_w, &fx0, &fx1);
                const int step = p->dilation_w == 1 ? fx1 - fx0 : 1;
                const int n = step * in_c;
                int8_t *out_px = output + ((b * out_h + oy) * out_w + ox) * out_c;
                for (int oc = 0; oc < out_c; oc += 2) {
                    const int two = oc + 1 < out_c;
                    int32_t s[4] = {0, 0, 0, 0};
                    for (int fy = fy0; fy < fy1; ++fy) {
                        const int8_t *row = in_b + (y0 + p->dilation_h * fy) * in_w * in_c;
                        const int8_t *w = filter + oc * f_stride + fy * f_w * in_c;
                        for (int fx = fx0; fx < fx1; fx += step) {
                            const int8_t *a = row + (x0 + p->dilation_w * fx) * in_c;
                            if (two) {
                                tm_mve_dot_1x2(a, w + fx * in_c, w + f_stride + fx * in_c, n, s);
                            } else {
                                int32_t t[2] = {s[0], s[2]};
                                tm_mve_dot_1x1(a, w + fx * in_c, n, t);
                                s[0] = t[0], s[2] = t[1];
                            }
                        }
                    }
                    for (int k = 0; k <= two; ++k) {
                        const int c = oc + k;
                        const int32_t acc = tm_mve_acc(bias ? bias[c] : 0, s[k], p->input_offset, s[2 + k]);
                        out_px[c] = tm_mve_out_s8(acc, p->out_multiplier[c], p->out_shift[c], p->output_offset,
                                                  p->act_min, p->act_max);
                    }
                }
            }
        }
    }
    return TM_OK;
}
