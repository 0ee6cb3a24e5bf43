/*
 * AVERAGE_POOL_2D and MAX_POOL_2D, int8, on the DSP extension: eight channels
 * (two words of the NHWC input) per pass, then four, then one by one.
 *
 * Average: each word of an in-image tap is widened with SXTAB16 (bytes 0,2)
 * and SXTAB16 ROR #8 (bytes 1,3) into two int16 pairs of sums.  With at most
 * 256 taps a sum is in [-32768, 32512], so the int16 lanes hold the portable
 * kernel's int32 sums exactly; the division (rounded half away from zero, by
 * the count of in-image taps) and the clamp are the portable expressions.
 * Windows of more than 256 taps go to the next kernel (tm_kernel_table.h).
 *
 * Max: SSUB8 sets a GE flag per byte where a >= b (the exact difference, not
 * the wrapped one), SEL takes the bytes of a there and of b elsewhere: a
 * per-byte signed maximum.  The maximum starts at INT8_MIN (as the portable
 * kernel does) and is clamped to the activation range the same way.
 *
 * int16 tensors go to the next kernel (tm_kernel_table.h).
 */
#include "tm_kernels.h"

#if TM_HAVE_DSP
#include "dsp_common.h"
#include "../ops/pool_common.h"

/* Signed per-byte maximum and minimum of four int8 lanes. */
static inline uint32_t max_s8x4(uint32_t a, uint32_t b) {
    uint32_t r;
    __asm__("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}

static inline uint32_t min_s8x4(uint32_t a, uint32_t b) {
    uint32_t r;
    __asm__("ssub8 %0, %1, %2\n\tsel %0, %2, %1" : "=&r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}

static inline uint32_t splat_s8(int32_t v) { return 0x01010101u * (uint8_t)(int8_t)v; }

/* The portable kernel's rounding division. */
static inline int32_t avg_div(int32_t acc, int32_t count) {
    const int32_t half = count / 2;
    return acc > 0 ? (acc + half) / count : (acc - half) / count;
}

/* Four channels' averages from the int16 pair sums (channels 0,2 and 1,3), as one word. */
static inline uint32_t avg_word(const tm_pool_ctx_t *k, int32_t s02, int32_t s13, int32_t count) {
    const int32_t r0 = tm_clamp_i32(avg_div((int16_t)s02, count), k->lo, k->hi);
    const int32_t r1 = tm_clamp_i32(avg_div((int16_t)s13, count), k->lo, k->hi);
    const int32_t r2 = tm_clamp_i32(avg_div(s02 >> 16, count), k->lo, k->hi);
    const int32_t r3 = tm_clamp_i32(avg_div(s13 >> 16, count), k->lo, k->hi);
    return (uint32_t)(uint8_t)r0 | (uint32_t)(uint8_t)r1 << 8 | (uint32_t)(uint8_t)r2 << 16 | (uint32_t)(uint8_t)r3 << 24;
}

/* One output pixel of the average pool; `in` points at the window's first
 * in-image tap (channel 0), `rows` x `cols` taps. */
static void avg_pixel(const tm_pool_ctx_t *k, const int8_t *in, int rows, int cols, int8_t *out) {
    const int32_t count = rows * cols;
    const int32_t ch = k->channels;
    const int32_t skip = k->row_stride - cols * ch;
    int32_t c = 0;
    for (; c + 8 <= ch; c += 8) { /* two words per tap: 9 instructions per 8 channels */
        const int8_t *q = in + c;
        int32_t a02 = 0, a13 = 0, b02 = 0, b13 = 0;
        for (int y = 0; y < rows; ++y) {
            for (int x = 0; x < cols; ++x) {
                const uint32_t wa = tm_ld32(q), wb = tm_ld32(q + 4);
                a02 = __sxtab16(a02, wa);
                a13 = tm_sxtab16_ror8(a13, wa);
                b02 = __sxtab16(b02, wb);
                b13 = tm_sxtab16_ror8(b13, wb);
                q += ch;
            }
            q += skip;
        }
        tm_st32(out + c, avg_word(k, a02, a13, count));
        tm_st32(out + c + 4, avg_word(k, b02, b13, count));
    }
    for (; c + 4 <= ch; c += 4) {
        const int8_t *q = in + c;
        int32_t s02 = 0, s13 = 0;
        for (int y = 0; y < rows; ++y) {
            for (int x = 0; x < cols; ++x) {
                const uint32_t w = tm_ld32(q);
                s02 = __sxtab16(s02, w);
                s13 = tm_sxtab16_ror8(s13, w);
                q += ch;
            }
            q += skip;
        }
        tm_st32(out + c, avg_word(k, s02, s13, count));
    }
    for (; c < ch; ++c) {
        const int8_t *q = in + c;
        int32_t acc = 0;
        for (int y = 0; y < rows; ++y) {
            for (int x = 0; x < cols; ++x) {
                acc += *q;
                q += ch;
            }
            q += skip;
        }
        out[c] = (int8_t)tm_clamp_i32(avg_div(acc, count), k->lo, k->hi);
    }
}

/* One output pixel of the max pool (an empty window gives clamp(INT8_MIN)). */
static void max_pixel(const tm_pool_ctx_t *k, const int8_t *in, int rows, int cols, int8_t *out) {
    const int32_t ch = k->channels;
    const int32_t skip = k->row_stride - cols * ch;
    const uint32_t lo4 = splat_s8(k->lo), hi4 = splat_s8(k->hi);
    int32_t c = 0;
    for (; c + 8 <= ch; c += 8) {
        const int8_t *q = in + c;
        uint32_t ma = 0x80808080u, mb = 0x80808080u;
        for (int y = 0; y < rows; ++y) {
            for (int x = 0; x < cols; ++x) {
                ma = max_s8x4(tm_ld32(q), ma);
                mb = max_s8x4(tm_ld32(q + 4), mb);
                q += ch;
            }
            q += skip;
        }
        tm_st32(out + c, min_s8x4(max_s8x4(ma, lo4), hi4));
        tm_st32(out + c + 4, min_s8x4(max_s8x4(mb, lo4), hi4));
    }
    for (; c + 4 <= ch; c += 4) {
        const int8_t *q = in + c;
        uint32_t m = 0x80808080u;
        for (int y = 0; y < rows; ++y) {
            for (int x = 0; x < cols; ++x) {
                m = max_s8x4(tm_ld32(q), m);
                q += ch;
            }
            q += skip;
        }
        tm_st32(out + c, min_s8x4(max_s8x4(m, lo4), hi4));
    }
    for (; c < ch; ++c) {
        const int8_t *q = in + c;
        int32_t m = INT8_MIN;
        for (int y = 0; y < rows; ++y) {
            for (int x = 0; x < cols; ++x) {
                m = *q > m ? *q : m;
                q += ch;
            }
            q += skip;
        }
        out[c] = (int8_t)tm_clamp_i32(m, k->lo, k->hi);
    }
}

/* The walk takes int8 ops only; the others, and int8 when the table does not give it to this kernel, go on. */
tm_status_t tm_kernel_average_pool_2d_dsp(const tm_model_t *model, const tm_op_t *op) {
    tm_status_t status;
    return TM_KERNEL_TAKES(average_pool_2d, dsp, TM_INT8) && tm_pool_s8_walk(model, op, avg_pixel, 1, &status)
               ? status
               : tm_next_average_pool_2d_dsp(model, op);
}

tm_status_t tm_kernel_max_pool_2d_dsp(const tm_model_t *model, const tm_op_t *op) {
    tm_status_t status;
    return TM_KERNEL_TAKES(max_pool_2d, dsp, TM_INT8) && tm_pool_s8_walk(model, op, max_pixel, 0, &status)
               ? status
               : tm_next_max_pool_2d_dsp(model, op);
}

#endif /* TM_HAVE_DSP */
