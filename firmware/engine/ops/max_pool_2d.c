/* MAX_POOL_2D, int8 and int16. */
#include "pool_common.h"
#include "tm_fixedpoint.h"

#define TM_DEFINE_MAX_POOL(NAME, T, LOWEST)                                                                  \
    void NAME(const tm_pool_params_t *p, const tm_pool_dims_t *s, const T *input, T *output) {              \
        for (int b = 0; b < s->batches; ++b) {                                                              \
            for (int oy = 0; oy < s->out_h; ++oy) {                                                         \
                const int y0 = oy * p->stride_h - p->pad_h;                                                 \
                int fy0, fy1;                                                                               \
                tm_pool_window(y0, p->filter_h, s->in_h, &fy0, &fy1);                                       \
                for (int ox = 0; ox < s->out_w; ++ox) {                                                     \
                    const int x0 = ox * p->stride_w - p->pad_w;                                             \
                    int fx0, fx1;                                                                           \
                    tm_pool_window(x0, p->filter_w, s->in_w, &fx0, &fx1);                                   \
                    for (int c = 0; c < s->channels; ++c) {                                                 \
                        int32_t max = LOWEST;                                                               \
                        for (int fy = fy0; fy < fy1; ++fy) {                                                \
                            for (int fx = fx0; fx < fx1; ++fx) {                                            \
                                const int32_t v =                                                           \
                                    input[((b * s->in_h + y0 + fy) * s->in_w + x0 + fx) * s->channels + c]; \
                                max = v > max ? v : max;                                                    \
                            }                                                                               \
                        }                                                                                   \
                        output[((b * s->out_h + oy) * s->out_w + ox) * s->channels + c] =                   \
                            (T)tm_clamp_i32(max, p->act_min, p->act_max);                                   \
                    }                                                                                       \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
    }

TM_DEFINE_MAX_POOL(tm_max_pool_2d_s8, int8_t, INT8_MIN)
TM_DEFINE_MAX_POOL(tm_max_pool_2d_s16, int16_t, INT16_MIN)

tm_status_t tm_kernel_max_pool_2d(const tm_model_t *model, const tm_op_t *op) {
    const tm_pool_params_t *p = (const tm_pool_params_t *)op->params;
    const void *input = tm_in_data(model, op, 0);
    void *output = tm_out_data(model, op, 0);
    tm_pool_dims_t s;
    if (!input || !output || !tm_pool_dims_of(model, op, &s)) {
        return TM_ERR_BAD_MODEL;
    }
    if (tm_in_tensor(model, op, 0)->dtype == TM_INT16) {
        tm_max_pool_2d_s16(p, &s, (const int16_t *)input, (int16_t *)output);
    } else {
        tm_max_pool_2d_s8(p, &s, (const int8_t *)input, (int8_t *)output);
    }
    return TM_OK;
}
