/* MAX_POOL_2D, int8. */
#include "pool_common.h"
#include "tm_fixedpoint.h"

tm_status_t tm_kernel_max_pool_2d(const tm_model_t *model, const tm_op_t *op) {
    const tm_pool_params_t *p = (const tm_pool_params_t *)op->params;
    const int8_t *input = (const int8_t *)tm_in_data(model, op, 0);
    int8_t *output = (int8_t *)tm_out_data(model, op, 0);
    tm_pool_shape_t s;
    if (!input || !output || !tm_pool_shape(model, op, &s)) {
        return TM_ERR_BAD_MODEL;
    }
    for (int b = 0; b < s.batches; ++b) {
        for (int oy = 0; oy < s.out_h; ++oy) {
            const int y0 = oy * p->stride_h - p->pad_h;
            int fy0, fy1;
            tm_pool_window(y0, p->filter_h, s.in_h, &fy0, &fy1);
            for (int ox = 0; ox < s.out_w; ++ox) {
                const int x0 = ox * p->stride_w - p->pad_w;
                int fx0, fx1;
                tm_pool_window(x0, p->filter_w, s.in_w, &fx0, &fx1);
                for (int c = 0; c < s.channels; ++c) {
                    int32_t max = INT8_MIN;
                    for (int fy = fy0; fy < fy1; ++fy) {
                        for (int fx = fx0; fx < fx1; ++fx) {
                            const int32_t v = input[((b * s.in_h + y0 + fy) * s.in_w + x0 + fx) * s.channels + c];
                            max = v > max ? v : max;
                        }
                    }
                    max = tm_clamp_i32(max, p->act_min, p->act_max);
                    output[((b * s.out_h + oy) * s.out_w + ox) * s.channels + c] = (int8_t)max;
                }
            }
        }
    }
    return TM_OK;
}
