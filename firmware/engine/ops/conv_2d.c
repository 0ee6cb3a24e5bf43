/* CONV_2D: int8 (per-channel int8 weights, int32 bias) and int16x8 (int16
 * activations with zero point 0, int8 weights, int32 or int64 bias). */
#include "tm_fixedpoint.h"
#include "tm_kernels.h"

typedef struct {
    int batches, in_h, in_w, in_c, out_h, out_w, out_c, f_h, f_w, f_c, filters_per_group;
} conv_shape_t;

static int conv_shape(const tm_model_t *model, const tm_op_t *op, conv_shape_t *s) {
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *f_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    if (!in_t || !f_t || in_t->rank != 4 || out_t->rank != 4 || f_t->rank != 4) {
        return 0;
    }
    s->batches = in_t->dims[0], s->in_h = in_t->dims[1], s->in_w = in_t->dims[2], s->in_c = in_t->dims[3];
    s->out_h = out_t->dims[1], s->out_w = out_t->dims[2], s->out_c = out_t->dims[3];
    s->f_h = f_t->dims[1], s->f_w = f_t->dims[2], s->f_c = f_t->dims[3];
    if (s->f_c <= 0 || s->in_c % s->f_c != 0 || s->out_c % (s->in_c / s->f_c) != 0) {
        return 0;
    }
    s->filters_per_group = s->out_c / (s->in_c / s->f_c);
    return 1;
}

/* The integer dot product over one output position and channel; T is the
 * activation type, offset is added to each input (int8: -zero point). */
#define TM_CONV_ACC(T, ACC_T)                                                                     \
    static ACC_T conv_acc_##T(const conv_shape_t *s, const tm_conv_params_t *p, const T *input,   \
                              const int8_t *filter, int b, int y0, int x0, int oc) {              \
        const int in_c_base = (oc / s->filters_per_group) * s->f_c;                               \
        ACC_T acc = 0;                                                                            \
        for (int fy = 0; fy < s->f_h; ++fy) {                                                     \
            const int y = y0 + p->dilation_h * fy;                                                \
            if (y < 0 || y >= s->in_h) {                                                          \
                continue;                                                                         \
            }                                                                                     \
            for (int fx = 0; fx < s->f_w; ++fx) {                                                 \
                const int x = x0 + p->dilation_w * fx;                                            \
                if (x < 0 || x >= s->in_w) {                                                      \
                    continue;                                                                     \
                }                                                                                 \
                const T *in_px = input + ((b * s->in_h + y) * s->in_w + x) * s->in_c + in_c_base; \
                const int8_t *f_px = filter + ((oc * s->f_h + fy) * s->f_w + fx) * s->f_c;        \
                for (int ic = 0; ic < s->f_c; ++ic) {                                             \
                    acc += (ACC_T)f_px[ic] * ((ACC_T)in_px[ic] + p->input_offset);                \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        return acc;                                                                               \
    }

TM_CONV_ACC(int8_t, int32_t)
TM_CONV_ACC(int16_t, int64_t)

tm_status_t tm_kernel_conv_2d(const tm_model_t *model, const tm_op_t *op) {
    const tm_conv_params_t *p = (const tm_conv_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const void *input = tm_in_data(model, op, 0);
    const int8_t *filter = (const int8_t *)tm_in_data(model, op, 1);
    const void *bias = tm_in_data(model, op, 2);
    void *output = tm_out_data(model, op, 0);
    conv_shape_t s;
    if (!input || !filter || !output || !conv_shape(model, op, &s)) {
        return TM_ERR_BAD_MODEL;
    }
    const int is_s16 = in_t->dtype == TM_INT16;
    for (int b = 0; b < s.batches; ++b) {
        for (int oy = 0; oy < s.out_h; ++oy) {
            const int y0 = oy * p->stride_h - p->pad_h;
            for (int ox = 0; ox < s.out_w; ++ox) {
                const int x0 = ox * p->stride_w - p->pad_w;
                const int out_base = ((b * s.out_h + oy) * s.out_w + ox) * s.out_c;
                for (int oc = 0; oc < s.out_c; ++oc) {
                    int32_t v;
                    if (is_s16) {
                        const int64_t acc = conv_acc_int16_t(&s, p, (const int16_t *)input, filter, b, y0, x0, oc);
                        v = tm_requantize_s16(acc, bias, p->acc64, oc, p->out_multiplier[oc], p->out_shift[oc]);
                        ((int16_t *)output)[out_base + oc] = (int16_t)tm_clamp_i32(v, p->act_min, p->act_max);
                    } else {
                        int32_t acc = conv_acc_int8_t(&s, p, (const int8_t *)input, filter, b, y0, x0, oc);
                        acc += bias ? ((const int32_t *)bias)[oc] : 0;
                        v = tm_multiply_by_quantized_multiplier(acc, p->out_multiplier[oc], p->out_shift[oc]);
                        v = tm_clamp_i32(v + p->output_offset, p->act_min, p->act_max);
                        ((int8_t *)output)[out_base + oc] = (int8_t)v;
                    }
                }
            }
        }
    }
    return TM_OK;
}
