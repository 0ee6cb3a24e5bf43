/* CONV_2D, int8 activations, per-channel int8 weights, int32 bias (TFLite spec). */
#include "tm_fixedpoint.h"
#include "tm_kernels.h"

tm_status_t tm_kernel_conv_2d(const tm_model_t *model, const tm_op_t *op) {
    const tm_conv_params_t *p = (const tm_conv_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *filter_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const int8_t *input = (const int8_t *)tm_in_data(model, op, 0);
    const int8_t *filter = (const int8_t *)tm_in_data(model, op, 1);
    const int32_t *bias = (const int32_t *)tm_in_data(model, op, 2);
    int8_t *output = (int8_t *)tm_out_data(model, op, 0);
    if (!input || !filter || !output || in_t->rank != 4 || out_t->rank != 4) {
        return TM_ERR_BAD_MODEL;
    }
    const int batches = in_t->dims[0], in_h = in_t->dims[1], in_w = in_t->dims[2], in_c = in_t->dims[3];
    const int out_h = out_t->dims[1], out_w = out_t->dims[2], out_c = out_t->dims[3];
    const int f_h = filter_t->dims[1], f_w = filter_t->dims[2], f_c = filter_t->dims[3];
    if (f_c <= 0 || in_c % f_c != 0 || out_c % (in_c / f_c) != 0) {
        return TM_ERR_BAD_MODEL;
    }
    const int filters_per_group = out_c / (in_c / f_c);

    for (int b = 0; b < batches; ++b) {
        for (int oy = 0; oy < out_h; ++oy) {
            const int y0 = oy * p->stride_h - p->pad_h;
            for (int ox = 0; ox < out_w; ++ox) {
                const int x0 = ox * p->stride_w - p->pad_w;
                for (int oc = 0; oc < out_c; ++oc) {
                    const int in_c_base = (oc / filters_per_group) * f_c;
                    int32_t acc = 0;
                    for (int fy = 0; fy < f_h; ++fy) {
                        const int y = y0 + p->dilation_h * fy;
                        if (y < 0 || y >= in_h) {
                            continue;
                        }
                        for (int fx = 0; fx < f_w; ++fx) {
                            const int x = x0 + p->dilation_w * fx;
                            if (x < 0 || x >= in_w) {
                                continue;
                            }
                            const int8_t *in_px = input + ((b * in_h + y) * in_w + x) * in_c + in_c_base;
                            const int8_t *f_px = filter + ((oc * f_h + fy) * f_w + fx) * f_c;
                            for (int ic = 0; ic < f_c; ++ic) {
                                acc += (int32_t)f_px[ic] * ((int32_t)in_px[ic] + p->input_offset);
                            }
                        }
                    }
                    if (bias) {
                        acc += bias[oc];
                    }
                    acc = tm_multiply_by_quantized_multiplier(acc, p->out_multiplier[oc], p->out_shift[oc]);
                    acc = tm_clamp_i32(acc + p->output_offset, p->act_min, p->act_max);
                    output[((b * out_h + oy) * out_w + ox) * out_c + oc] = (int8_t)acc;
                }
            }
        }
    }
    return TM_OK;
}
