/* pool_common.c - the output-pixel walk the optimized int8 pooling kernels share
 * (ops_dsp/pooling.c, ops_mve/pooling.c): each supplies the per-pixel function. */
#include "pool_common.h"

int tm_pool_s8_walk(const tm_model_t *model, const tm_op_t *op, tm_pool_pixel_fn pixel, int average,
                    tm_status_t *status) {
    const tm_pool_params_t *p = (const tm_pool_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const int8_t *input = (const int8_t *)tm_in_data(model, op, 0);
    int8_t *output = (int8_t *)tm_out_data(model, op, 0);
    tm_pool_dims_t s;
    if (!input || !output || in_t->dtype != TM_INT8 || !tm_pool_dims_of(model, op, &s)) {
        return 0;
    }
    if (average && (int32_t)p->filter_h * p->filter_w > 256) {
        return 0;
    }
    tm_pool_ctx_t k;
    k.lo = p->act_min < INT8_MIN ? INT8_MIN : p->act_min;
    k.hi = p->act_max > INT8_MAX ? INT8_MAX : p->act_max;
    if (k.lo > k.hi) {
        return 0;
    }
    k.channels = s.channels;
    k.row_stride = s.in_w * s.channels;
    for (int b = 0; b < s.batches; ++b) {
        const int8_t *in_b = input + (int32_t)b * s.in_h * k.row_stride;
        for (int oy = 0; oy < s.out_h; ++oy) {
            const int y0 = oy * p->stride_h - p->pad_h;
            int fy0, fy1;
            tm_pool_window(y0, p->filter_h, s.in_h, &fy0, &fy1);
            for (int ox = 0; ox < s.out_w; ++ox) {
                const int x0 = ox * p->stride_w - p->pad_w;
                int fx0, fx1;
                tm_pool_window(x0, p->filter_w, s.in_w, &fx0, &fx1);
                const int rows = fy1 > fy0 ? fy1 - fy0 : 0, cols = fx1 > fx0 ? fx1 - fx0 : 0;
                if (average && rows * cols <= 0) {
                    *status = TM_ERR_BAD_MODEL; /* as the portable kernel */
                    return 1;
                }
                const int8_t *in = in_b + ((y0 + fy0) * s.in_w + x0 + fx0) * s.channels;
                pixel(&k, in, rows, cols, output);
                output += s.channels;
            }
        }
    }
    *status = TM_OK;
    return 1;
}
