/*
 * AVERAGE_POOL_2D and MAX_POOL_2D, int8, on Helium: 16 channels per pass (the
 * last partial pass tail-predicated), so any channel count.
 *
 * Max: VMAXQ.S8 over the in-image taps, from INT8_MIN (as the portable
 * kernel), then the activation clamp; one load and one VMAX per tap and 16
 * channels.
 *
 * Average: VLDRB.S16 widens 8 channels per load; two int16 sums per pass
 * (channels 0-7, 8-15).  With at most 256 taps a sum is in [-32768, 32512],
 * so the int16 lanes hold the portable int32 sums exactly (larger windows go
 * to the next kernel).  The portable rounding division
 *   acc > 0 ? (acc + h) / n : (acc - h) / n,   h = n / 2,
 * equals sign(acc) * floor((|acc| + h) / n) (for acc = 0 both are 0, h < n).
 * With N = |acc| + h < 2^16 and 2 <= n <= 256, floor(N / n) is the high word
 * of N * m, m = floor((2^32 - 1) / n) + 1: m = 2^32/n + e with 0 <= e <= 1, so
 * N*m / 2^32 = N/n + N*e/2^32, and N*e/2^32 < 1/n <= 1 - frac(N/n) whenever
 * frac(N/n) > 0 (frac is a multiple of 1/n; N*n < 2^24 < 2^32).  VMULH.U32
 * is that high word; n = 1 is the sum itself.  The 32-bit lanes come from
 * VMOVLB/VMOVLT (even/odd int16 lanes) and go back with VMOVNB/VMOVNT, which
 * restores the channel order for the narrowing VSTRB.16.
 *
 * int16 tensors go to the next kernel (tm_kernel_table.h).
 */
#include "mve_common.h"

#if TM_HAVE_MVE
#include "../ops/pool_common.h"

/* sign(v) * floor((|v| + half) / n) via the reciprocal `m` (n >= 2), clamped. */
static inline __attribute__((always_inline)) int32x4_t avg_div4(int32x4_t v, int32_t half, uint32_t m, int32_t one,
                                                               int32_t lo, int32_t hi) {
    int32x4_t q = v;
    if (!one) {
        const uint32x4_t n = vreinterpretq_u32_s32(vaddq_n_s32(vabsq_s32(v), half));
        const int32x4_t r = vreinterpretq_s32_u32(vmulhq_u32(n, vdupq_n_u32(m)));
        q = vpselq_s32(vnegq_s32(r), r, vcmpltq_n_s32(v, 0));
    }
    return vminq_s32(vmaxq_s32(q, vdupq_n_s32(lo)), vdupq_n_s32(hi));
}

static inline __attribute__((always_inline)) int16x8_t avg_div8(int16x8_t s, int32_t half, uint32_t m, int32_t one,
                                                               int32_t lo, int32_t hi) {
    const int32x4_t e = avg_div4(vmovlbq_s16(s), half, m, one, lo, hi);
    const int32x4_t o = avg_div4(vmovltq_s16(s), half, m, one, lo, hi);
    return vmovntq_s32(vmovnbq_s32(vdupq_n_s16(0), e), o);
}

static void avg_pixel(const tm_pool_ctx_t *k, const int8_t *in, int rows, int cols, int8_t *out) {
    const int32_t count = rows * cols;
    const int32_t half = count / 2;
    const int32_t one = count == 1;
    const uint32_t m = one ? 0u : 0xFFFFFFFFu / (uint32_t)count + 1u;
    const int32_t ch = k->channels;
    const int32_t skip = k->row_stride - cols * ch;
    int32_t c = 0;
    for (; c + 16 <= ch; c += 16) {
        const int8_t *q = in + c;
        int16x8_t s0 = vdupq_n_s16(0), s1 = vdupq_n_s16(0);
        for (int y = 0; y < rows; ++y) {
            for (int x = 0; x < cols; ++x) {
                s0 = vaddq_s16(s0, vldrbq_s16(q));
                s1 = vaddq_s16(s1, vldrbq_s16(q + 8));
                q += ch;
            }
            q += skip;
        }
        vstrbq_s16(out + c, avg_div8(s0, half, m, one, k->lo, k->hi));
        vstrbq_s16(out + c + 8, avg_div8(s1, half, m, one, k->lo, k->hi));
    }
    if (c < ch) {
        const int32_t rem = ch - c;
        const mve_pred16_t p0 = vctp16q((uint32_t)rem);
        const mve_pred16_t p1 = vctp16q((uint32_t)(rem > 8 ? rem - 8 : 0));
        const int8_t *q = in + c;
        int16x8_t s0 = vdupq_n_s16(0), s1 = vdupq_n_s16(0);
        for (int y = 0; y < rows; ++y) {
            for (int x = 0; x < cols; ++x) {
                s0 = vaddq_s16(s0, vldrbq_z_s16(q, p0));
                s1 = vaddq_s16(s1, vldrbq_z_s16(q + 8, p1));
                q += ch;
            }
            q += skip;
        }
        vstrbq_p_s16(out + c, avg_div8(s0, half, m, one, k->lo, k->hi), p0);
        vstrbq_p_s16(out + c + 8, avg_div8(s1, half, m, one, k->lo, k->hi), p1);
    }
}

/* One output pixel of the max pool (an empty window gives clamp(INT8_MIN)). */
static void max_pixel(const tm_pool_ctx_t *k, const int8_t *in, int rows, int cols, int8_t *out) {
    const int32_t ch = k->channels;
    const int32_t skip = k->row_stride - cols * ch;
    const int8x16_t lo = vdupq_n_s8((int8_t)k->lo), hi = vdupq_n_s8((int8_t)k->hi);
    int32_t c = 0;
    for (; c + 16 <= ch; c += 16) {
        const int8_t *q = in + c;
        int8x16_t mx = vdupq_n_s8(INT8_MIN);
        for (int y = 0; y < rows; ++y) {
            for (int x = 0; x < cols; ++x) {
                mx = vmaxq_s8(mx, vldrbq_s8(q));
                q += ch;
            }
            q += skip;
        }
        vstrbq_s8(out + c, vminq_s8(vmaxq_s8(mx, lo), hi));
    }
    if (c < ch) {
        const mve_pred16_t p = vctp8q((uint32_t)(ch - c));
        const int8_t *q = in + c;
        int8x16_t mx = vdupq_n_s8(INT8_MIN);
        for (int y = 0; y < rows; ++y) {
            for (int x = 0; x < cols; ++x) {
                mx = vmaxq_s8(mx, vldrbq_z_s8(q, p));
                q += ch;
            }
            q += skip;
        }
        vstrbq_p_s8(out + c, vminq_s8(vmaxq_s8(mx, lo), hi), p);
    }
}

/* The walk takes int8 ops only; the others, and int8 when the table does not give it to this kernel, go on. */
tm_status_t tm_kernel_average_pool_2d_mve(const tm_model_t *model, const tm_op_t *op) {
    tm_status_t status;
    return TM_KERNEL_TAKES(average_pool_2d, mve, TM_INT8) && tm_pool_s8_walk(model, op, avg_pixel, 1, &status)
               ? status
               : tm_next_average_pool_2d_mve(model, op);
}

tm_status_t tm_kernel_max_pool_2d_mve(const tm_model_t *model, const tm_op_t *op) {
    tm_status_t status;
    return TM_KERNEL_TAKES(max_pool_2d, mve, TM_INT8) && tm_pool_s8_walk(model, op, max_pixel, 0, &status)
               ? status
               : tm_next_max_pool_2d_mve(model, op);
}

#endif /* TM_HAVE_MVE */
