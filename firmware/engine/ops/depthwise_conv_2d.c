/* DEPTHWISE_CONV_2D: int8 and int16x8, per-channel int8 weights (1 x H x W x C*M). */
#include "tm_fixedpoint.h"
#include "tm_kernels.h"

#define TM_DW_ACC(T, ACC_T)                                                                         \
    static ACC_T dw_acc_##T(const tm_conv_dims_t *d, const tm_conv_params_t *p, const T *input,     \
                            const int8_t *filter, int b, int y0, int x0, int ic, int oc) {          \
        ACC_T acc = 0;                                                                              \
        for (int fy = 0; fy < d->f_h; ++fy) {                                                       \
            const int y = y0 + p->dilation_h * fy;                                                  \
            if (y < 0 || y >= d->in_h) {                                                            \
                continue;                                                                           \
            }                                                                                       \
            for (int fx = 0; fx < d->f_w; ++fx) {                                                   \
                const int x = x0 + p->dilation_w * fx;                                              \
                if (x < 0 || x >= d->in_w) {                                                        \
                    continue;                                                                       \
                }                                                                                   \
                const ACC_T in_v = input[((b * d->in_h + y) * d->in_w + x) * d->in_c + ic];         \
                const ACC_T f_v = filter[(fy * d->f_w + fx) * d->out_c + oc];                       \
                acc += f_v * (in_v + p->input_offset);                                              \
            }                                                                                       \
        }                                                                                           \
        return acc;                                                                                 \
    }

TM_DW_ACC(int8_t, int32_t)
TM_DW_ACC(int16_t, int64_t)

tm_status_t tm_depthwise_conv_2d_s8(const tm_conv_params_t *p, const tm_conv_dims_t *d, const int8_t *input,
                                    const int8_t *filter, const int32_t *bias, int8_t *output) {
    const int mult = p->depth_multiplier;
    if (d->out_c != d->in_c * mult) {
        return TM_ERR_BAD_MODEL;
    }
    for (int b = 0; b < d->batches; ++b) {
        for (int oy = 0; oy < d->out_h; ++oy) {
            const int y0 = oy * p->stride_h - p->pad_h;
            for (int ox = 0; ox < d->out_w; ++ox) {
                const int x0 = ox * p->stride_w - p->pad_w;
                int8_t *out = output + ((b * d->out_h + oy) * d->out_w + ox) * d->out_c;
                for (int ic = 0; ic < d->in_c; ++ic) {
                    for (int m = 0; m < mult; ++m) {
                        const int oc = ic * mult + m;
                        int32_t acc = dw_acc_int8_t(d, p, input, filter, b, y0, x0, ic, oc);
                        acc += bias ? bias[oc] : 0;
                        const int32_t v =
                            tm_multiply_by_quantized_multiplier(acc, p->out_multiplier[oc], p->out_shift[oc]);
                        out[oc] = (int8_t)tm_clamp_i32(v + p->output_offset, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
    return TM_OK;
}

tm_status_t tm_depthwise_conv_2d_s16(const tm_conv_params_t *p, const tm_conv_dims_t *d, const int16_t *input,
                                     const int8_t *filter, const void *bias, int16_t *output) {
    const int mult = p->depth_multiplier;
    if (d->out_c != d->in_c * mult) {
        return TM_ERR_BAD_MODEL;
    }
    for (int b = 0; b < d->batches; ++b) {
        for (int oy = 0; oy < d->out_h; ++oy) {
            const int y0 = oy * p->stride_h - p->pad_h;
            for (int ox = 0; ox < d->out_w; ++ox) {
                const int x0 = ox * p->stride_w - p->pad_w;
                int16_t *out = output + ((b * d->out_h + oy) * d->out_w + ox) * d->out_c;
                for (int ic = 0; ic < d->in_c; ++ic) {
                    for (int m = 0; m < mult; ++m) {
                        const int oc = ic * mult + m;
                        const int64_t acc = dw_acc_int16_t(d, p, input, filter, b, y0, x0, ic, oc);
                        const int32_t v =
                            tm_requantize_s16(acc, bias, p->acc64, oc, p->out_multiplier[oc], p->out_shift[oc]);
                        out[oc] = (int16_t)tm_clamp_i32(v, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
    return TM_OK;
}

tm_status_t tm_kernel_depthwise_conv_2d(const tm_model_t *model, const tm_op_t *op) {
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
        return tm_depthwise_conv_2d_s16(p, &d, (const int16_t *)input, filter, bias, (int16_t *)output);
    }
    return tm_depthwise_conv_2d_s8(p, &d, (const int8_t *)input, filter, (const int32_t *)bias, (int8_t *)output);
}
