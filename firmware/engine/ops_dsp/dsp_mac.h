/*
 * dsp_mac.h - int8 dot-product blocks on the DSP extension (see dsp_common.h).
 * Each accumulates sum(w[i] * (x[i] + offset)) over n elements into int32
 * accumulators: 2 inputs x 2 weight rows (4 sums), 1 x 2, 2 x 1 and 1 x 1.
 * Four elements per step, the remaining n % 4 one by one.
 */
#ifndef TM_DSP_MAC_H
#define TM_DSP_MAC_H

#include "dsp_common.h"

/* s[0] += a0.w0, s[1] += a0.w1, s[2] += a1.w0, s[3] += a1.w1 */
static inline void tm_mac_2x2(const int8_t *a0, const int8_t *a1, const int8_t *w0, const int8_t *w1, int n,
                              int32_t offset, int32_t s[4]) {
    const int32_t off2 = tm_pack_offset(offset);
    int32_t s00 = s[0], s01 = s[1], s10 = s[2], s11 = s[3];
    for (; n >= 4; n -= 4) {
        const uint32_t x0 = tm_ld32(a0), x1 = tm_ld32(a1);
        const uint32_t f0 = tm_ld32(w0), f1 = tm_ld32(w1);
        a0 += 4, a1 += 4, w0 += 4, w1 += 4;
        const int32_t x0l = __sxtab16(off2, x0), x0h = tm_sxtab16_ror8(off2, x0);
        const int32_t x1l = __sxtab16(off2, x1), x1h = tm_sxtab16_ror8(off2, x1);
        const int32_t f0l = __sxtb16(f0), f0h = tm_sxtb16_ror8(f0);
        s00 = __smlad(x0l, f0l, s00);
        s00 = __smlad(x0h, f0h, s00);
        s10 = __smlad(x1l, f0l, s10);
        s10 = __smlad(x1h, f0h, s10);
        const int32_t f1l = __sxtb16(f1), f1h = tm_sxtb16_ror8(f1);
        s01 = __smlad(x0l, f1l, s01);
        s01 = __smlad(x0h, f1h, s01);
        s11 = __smlad(x1l, f1l, s11);
        s11 = __smlad(x1h, f1h, s11);
    }
    for (; n > 0; --n) {
        const int32_t x0 = *a0++ + offset, x1 = *a1++ + offset, f0 = *w0++, f1 = *w1++;
        s00 += x0 * f0, s01 += x0 * f1, s10 += x1 * f0, s11 += x1 * f1;
    }
    s[0] = s00, s[1] = s01, s[2] = s10, s[3] = s11;
}

/* s[0] += a.w0, s[1] += a.w1 */
static inline void tm_mac_1x2(const int8_t *a, const int8_t *w0, const int8_t *w1, int n, int32_t offset,
                              int32_t s[2]) {
    const int32_t off2 = tm_pack_offset(offset);
    int32_t s0 = s[0], s1 = s[1];
    for (; n >= 4; n -= 4) {
        const uint32_t x = tm_ld32(a), f0 = tm_ld32(w0), f1 = tm_ld32(w1);
        a += 4, w0 += 4, w1 += 4;
        const int32_t xl = __sxtab16(off2, x), xh = tm_sxtab16_ror8(off2, x);
        s0 = __smlad(xl, __sxtb16(f0), s0);
        s0 = __smlad(xh, tm_sxtb16_ror8(f0), s0);
        s1 = __smlad(xl, __sxtb16(f1), s1);
        s1 = __smlad(xh, tm_sxtb16_ror8(f1), s1);
    }
    for (; n > 0; --n) {
        const int32_t x = *a++ + offset;
        s0 += x * *w0++, s1 += x * *w1++;
    }
    s[0] = s0, s[1] = s1;
}

/* returns s + a.w */
static inline int32_t tm_mac_1x1(const int8_t *a, const int8_t *w, int n, int32_t offset, int32_t s) {
    const int32_t off2 = tm_pack_offset(offset);
    for (; n >= 4; n -= 4) {
        const uint32_t x = tm_ld32(a), f = tm_ld32(w);
        a += 4, w += 4;
        s = __smlad(__sxtab16(off2, x), __sxtb16(f), s);
        s = __smlad(tm_sxtab16_ror8(off2, x), tm_sxtb16_ror8(f), s);
    }
    for (; n > 0; --n) {
        s += (*a++ + offset) * *w++;
    }
    return s;
}

#endif /* TM_DSP_MAC_H */
