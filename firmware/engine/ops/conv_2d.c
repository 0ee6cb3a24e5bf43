/* CONV_2D: int8 (per-channel int8 weights, int32 bias) and int16x8 (int16
 * activations with zero point 0, int8 weights, int32 or int64 bias). */
#include "tm_fixedpoint.h"
#include "tm_kernels.h"

/* The filters of a group read in_c / groups channels of the input, from (oc / filters_per_group) * f_c. */
static int filters_per_group(const tm_conv_dims_t *d) {
    if (d->f_c <= 0 || d->in_c % d->f_c != 0 || d->out_c % (d->in_c / d->f_c) != 0) {
        return 0;
    }
    return d->out_c / (d->in_c / d->f_c);
}

/* Why the sums below are exact, and why they are written this way: integer addition gives the same
 * sum in any order, so a window is summed run by run, each run a plain dot product that compilers turn
 * into 16-bit multiply-add vector instructions (the host build of the engine answers a study's query
 * attacks: docs/engine.md).  int8: in + offset lies in [-255, 255], so each product fits 16 x 8 bits and
 * the int32 sum of a 3x3x512 window cannot overflow.  int16x8 (zero point 0): each product is below 2^22
 * in magnitude, so TM_CONV_RUN_S16 of them sum exactly in int32 before joining the int64 total. */
#define TM_CONV_RUN_S16 256

static int32_t dot_s8(const int8_t *in, const int8_t *f, int n, int32_t offset) {
    const int16_t off = (int16_t)offset;   /* -zero point: [-127, 128] */
    int32_t acc = 0;
    for (int i = 0; i < n; ++i) {
        acc += (int16_t)(in[i] + off) * (int16_t)f[i];
    }
    return acc;
}

static int64_t dot_s16(const int16_t *in, const int8_t *f, int n, int32_t offset) {
    int64_t acc = 0;
    for (int start = 0; start < n; start += TM_CONV_RUN_S16) {
        const int end = n - start < TM_CONV_RUN_S16 ? n : start + TM_CONV_RUN_S16;
        int32_t run = 0;
        for (int i = start; i < end; ++i) {
            run += in[i] * (int16_t)f[i];
        }
        acc += run;
    }
    if (offset != 0) {   /* 16x8 models have zero point 0; a direct caller may not */
        for (int i = 0; i < n; ++i) {
            acc += (int64_t)offset * f[i];
        }
    }
    return acc;
}

/* The taps of one output position that land inside the input: rows [fy0, fy1) and columns [fx0, fx1)
 * of the filter, read as runs of `taps` adjacent taps (a whole row when the channels are not grouped
 * and dilation_w is 1: the input pixels of a row are then adjacent, as are the filter's; else 1). */
typedef struct {
    int y0, x0, fy0, fy1, fx0, fx1, taps;
} conv_window_t;

static conv_window_t conv_window(const tm_conv_dims_t *d, const tm_conv_params_t *p, int oy, int ox) {
    conv_window_t w;
    w.y0 = oy * p->stride_h - p->pad_h;
    w.x0 = ox * p->stride_w - p->pad_w;
    tm_tap_range(w.y0, d->f_h, p->dilation_h, d->in_h, &w.fy0, &w.fy1);
    tm_tap_range(w.x0, d->f_w, p->dilation_w, d->in_w, &w.fx0, &w.fx1);
    w.taps = (p->dilation_w == 1 && d->f_c == d->in_c) ? w.fx1 - w.fx0 : 1;
    return w;
}

/* The integer dot product over one output position (its window) and channel; T the activation type. */
#define TM_CONV_ACC(T, ACC_T, DOT)                                                                    \
    static ACC_T conv_acc_##T(const tm_conv_dims_t *d, int per_group, const tm_conv_params_t *p,      \
                              const T *input, const int8_t *filter, int b, const conv_window_t *w,    \
                              int oc) {                                                               \
        const int in_c_base = (oc / per_group) * d->f_c;                                              \
        ACC_T acc = 0;                                                                                \
        for (int fy = w->fy0; fy < w->fy1; ++fy) {                                                    \
            const int y = w->y0 + p->dilation_h * fy;                                                 \
            for (int fx = w->fx0; fx < w->fx1; fx += w->taps) {                                       \
                const int x = w->x0 + p->dilation_w * fx;                                             \
                const T *in_px = input + ((b * d->in_h + y) * d->in_w + x) * d->in_c + in_c_base;     \
                const int8_t *f_px = filter + ((oc * d->f_h + fy) * d->f_w + fx) * d->f_c;            \
                acc += DOT(in_px, f_px, w->taps * d->f_c, p->input_offset);                           \
            }                                                                                         \
        }                                                                                             \
        return acc;                                                                                   \
    }

TM_CONV_ACC(int8_t, int32_t, dot_s8)
TM_CONV_ACC(int16_t, int64_t, dot_s16)

tm_status_t tm_conv_2d_s8(const tm_conv_params_t *p, const tm_conv_dims_t *d, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, int8_t *output) {
    const int per_group = filters_per_group(d);
    if (!per_group) {
        return TM_ERR_BAD_MODEL;
    }
    for (int b = 0; b < d->batches; ++b) {
        for (int oy = 0; oy < d->out_h; ++oy) {
            for (int ox = 0; ox < d->out_w; ++ox) {
                const conv_window_t w = conv_window(d, p, oy, ox);
                int8_t *out = output + ((b * d->out_h + oy) * d->out_w + ox) * d->out_c;
                for (int oc = 0; oc < d->out_c; ++oc) {
                    int32_t acc = conv_acc_int8_t(d, per_group, p, input, filter, b, &w, oc);
                    acc += bias ? bias[oc] : 0;
                    const int32_t v =
                        tm_multiply_by_quantized_multiplier(acc, p->out_multiplier[oc], p->out_shift[oc]);
                    out[oc] = (int8_t)tm_clamp_i32(v + p->output_offset, p->act_min, p->act_max);
                }
            }
        }
    }
    return TM_OK;
}

tm_status_t tm_conv_2d_s16(const tm_conv_params_t *p, const tm_conv_dims_t *d, const int16_t *input,
                           const int8_t *filter, const void *bias, int16_t *output) {
    const int per_group = filters_per_group(d);
    if (!per_group) {
        return TM_ERR_BAD_MODEL;
    }
    for (int b = 0; b < d->batches; ++b) {
        for (int oy = 0; oy < d->out_h; ++oy) {
            for (int ox = 0; ox < d->out_w; ++ox) {
                const conv_window_t w = conv_window(d, p, oy, ox);
                int16_t *out = output + ((b * d->out_h + oy) * d->out_w + ox) * d->out_c;
                for (int oc = 0; oc < d->out_c; ++oc) {
                    const int64_t acc = conv_acc_int16_t(d, per_group, p, input, filter, b, &w, oc);
                    const int32_t v =
                        tm_requantize_s16(acc, bias, p->acc64, oc, p->out_multiplier[oc], p->out_shift[oc]);
                    out[oc] = (int16_t)tm_clamp_i32(v, p->act_min, p->act_max);
                }
            }
        }
    }
    return TM_OK;
}

tm_status_t tm_kernel_conv_2d(const tm_model_t *model, const tm_op_t *op) {
    const tm_conv_params_t *p = (const tm_conv_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const void *input = tm_in_data(model, op, 0);
    const int8_t *filter = (const int8_t *)tm_in_data(model, op, 1);
    const void *bias = tm_in_data(model, op, 2);
    void *output = tm_out_data(model, op, 0);
    tm_conv_dims_t d;
    if (!input || !filter || !output ||
        !tm_conv_dims_of(in_t, tm_in_tensor(model, op, 1), tm_out_tensor(model, op, 0), &d)) {
        return TM_ERR_BAD_MODEL;
    }
    if (in_t->dtype == TM_INT16) {
        return tm_conv_2d_s16(p, &d, (const int16_t *)input, filter, bias, (int16_t *)output);
    }
    return tm_conv_2d_s8(p, &d, (const int8_t *)input, filter, (const int32_t *)bias, (int8_t *)output);
}
