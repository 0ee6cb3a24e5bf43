/* AVERAGE_POOL_2D, int8 and int16: mean over the in-image taps, rounded half
 * away from zero. */
#include "pool_common.h"
#include "tm_fixedpoint.h"

#define TM_DEFINE_AVG_POOL(NAME, T)                                                                           \
    tm_status_t NAME(const tm_pool_params_t *p, const tm_pool_dims_t *s, const T *input, T *output) {        \
        for (int b = 0; b < s->batches; ++b) {                                                               \
            for (int oy = 0; oy < s->out_h; ++oy) {                                                          \
                const int y0 = oy * p->stride_h - p->pad_h;                                                  \
                int fy0, fy1;                                                                                \
                tm_pool_window(y0, p->filter_h, s->in_h, &fy0, &fy1);                                        \
                for (int ox = 0; ox < s->out_w; ++ox) {                                                      \
                    const int x0 = ox * p->stride_w - p->pad_w;                                              \
                    int fx0, fx1;                                                                            \
                    tm_pool_window(x0, p->filter_w, s->in_w, &fx0, &fx1);                                    \
                    const int32_t count = (fy1 - fy0) * (fx1 - fx0);                                         \
                    if (count <= 0) {                                                                        \
                        return TM_ERR_BAD_MODEL;                                                             \
                    }                                                                                        \
                    for (int c = 0; c < s->channels; ++c) {                                                  \
                        int32_t acc = 0;                                                                     \
                        for (int fy = fy0; fy < fy1; ++fy) {                                                 \
                            for (int fx = fx0; fx < fx1; ++fx) {                                             \
                                acc += input[((b * s->in_h + y0 + fy) * s->in_w + x0 + fx) * s->channels + c]; \
                            }                                                                                \
                        }                                                                                    \
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;               \
                        output[((b * s->out_h + oy) * s->out_w + ox) * s->channels + c] =                    \
                            (T)tm_clamp_i32(acc, p->act_min, p->act_max);                                    \
                    }                                                                                        \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
        return TM_OK;                                                                                        \
    }

TM_DEFINE_AVG_POOL(tm_average_pool_2d_s8, int8_t)
TM_DEFINE_AVG_POOL(tm_average_pool_2d_s16, int16_t)

tm_status_t tm_kernel_average_pool_2d(const tm_model_t *model, const tm_op_t *op) {
    const tm_pool_params_t *p = (const tm_pool_params_t *)op->params;
    const void *input = tm_in_data(model, op, 0);
    void *output = tm_out_data(model, op, 0);
    tm_pool_dims_t s;
    if (!input || !output || !tm_pool_dims_of(model, op, &s)) {
        return TM_ERR_BAD_MODEL;
    }
    if (tm_in_tensor(model, op, 0)->dtype == TM_INT16) {
        return tm_average_pool_2d_s16(p, &s, (const int16_t *)input, (int16_t *)output);
    }
    return tm_average_pool_2d_s8(p, &s, (const int8_t *)input, (int8_t *)output);
}
