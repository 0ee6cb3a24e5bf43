/* preprocess.c - the input pre-processing stage (preprocess.h): bit-depth
 * squeezing or a median filter on the quantized input tensor, in place, with
 * integer arithmetic only and no allocation.  Each is the C form of the
 * NumPy reference in host/defenses/integer.py, which it must match bit for bit. */
#include "preprocess.h"

#include <string.h>

uint8_t preprocess_kind(void) { return TM_PREPROCESS; }
uint8_t preprocess_param(void) { return TM_PREPROCESS_PARAM; }

#if TM_PREPROCESS != TM_PRE_NONE
/* The first input tensor, if it is int8 or int16 (the stages' dtypes). */
static const tm_tensor_t *stage_input(const tm_model_t *model, void **data) {
    if (model->n_inputs < 1 || model->inputs[0] < 0) {
        return 0;
    }
    const tm_tensor_t *t = &model->tensors[model->inputs[0]];
    if (t->dtype != TM_INT8 && t->dtype != TM_INT16) {
        return 0;
    }
    *data = tm_tensor_ptr(model, model->inputs[0]);
    return t;
}
#endif

#if TM_PREPROCESS == TM_PRE_SQUEEZE

#if TM_PREPROCESS_PARAM < 1 || TM_PREPROCESS_PARAM > 16
#error "squeezing: TM_PREPROCESS_PARAM (bits) must be 1..16"
#endif
#if !defined(TM_PREPROCESS_Q_LO) || !defined(TM_PREPROCESS_Q_HI) || TM_PREPROCESS_Q_HI <= TM_PREPROCESS_Q_LO
#error "squeezing needs TM_PREPROCESS_Q_LO < TM_PREPROCESS_Q_HI"
#endif

#define LEVELS ((1u << TM_PREPROCESS_PARAM) - 1u)                        /* M */
#define STEPS ((uint32_t)(TM_PREPROCESS_Q_HI - TM_PREPROCESS_Q_LO))      /* N, at most 65535 */

/* round(a / b), ties to even (NumPy's rint; integer.py's _div_round_half_even).  With b a
 * compile-time constant the compiler turns the division into a multiplication. */
static inline uint32_t div_round_half_even(uint32_t a, uint32_t b) {
    uint32_t quot = a / b;
    const uint32_t twice_rem = 2u * (a - quot * b);
    if (twice_rem > b || (twice_rem == b && (quot & 1u))) {
        ++quot;
    }
    return quot;
}

/* u = clip(q) - q_lo;  k = round(u·M / N);  q' = q_lo + round(k·N / M).  u·M and k·N stay
 * below 2^32 because N, M <= 65535. */
static inline int32_t squeeze_value(int32_t q) {
    q = q < TM_PREPROCESS_Q_LO ? TM_PREPROCESS_Q_LO : (q > TM_PREPROCESS_Q_HI ? TM_PREPROCESS_Q_HI : q);
    const uint32_t level = div_round_half_even((uint32_t)(q - TM_PREPROCESS_Q_LO) * LEVELS, STEPS);
    return TM_PREPROCESS_Q_LO + (int32_t)div_round_half_even(level * STEPS, LEVELS);
}

int preprocess_input(const tm_model_t *model) {
    void *data;
    const tm_tensor_t *t = stage_input(model, &data);
    if (!t) {
        return 1;
    }
    if (t->dtype == TM_INT8) {
        int8_t *p = data;
        for (uint32_t i = 0; i < t->bytes; ++i) {
            p[i] = (int8_t)squeeze_value(p[i]);
        }
    } else {
        int16_t *p = data;
        for (uint32_t i = 0; i < t->bytes / 2u; ++i) {
            p[i] = (int16_t)squeeze_value(p[i]);
        }
    }
    return 0;
}

#elif TM_PREPROCESS == TM_PRE_MEDIAN

#if TM_PREPROCESS_PARAM < 1 || TM_PREPROCESS_PARAM > 5
#error "median: TM_PREPROCESS_PARAM (window) must be 1..5"
#endif
#ifndef TM_PREPROCESS_RING_BYTES
#error "median needs TM_PREPROCESS_RING_BYTES"
#endif

/* SciPy's window of size w (origin 0) covers offsets -w/2 .. w-1-w/2 on each axis: the
 * pixel and its upper/left neighbours for w = 2.  The result is the value of rank w²/2. */
#define WINDOW TM_PREPROCESS_PARAM
#define BEFORE (WINDOW / 2)
#define RANK (WINDOW * WINDOW / 2)
/* Filtering row i overwrites it, while rows i-BEFORE..i are still needed: their originals. */
#define RING_ROWS (BEFORE + 1)

static uint8_t ring[TM_PREPROCESS_RING_BYTES] __attribute__((aligned(4)));

/* Half-sample reflection (… b a | a b c …, SciPy's "reflect"), periodic past 2n. */
static inline int32_t reflect(int32_t i, int32_t n) {
    if ((uint32_t)i < (uint32_t)n) {
        return i;
    }
    const int32_t period = 2 * n;
    int32_t m = i % period;
    m = m < 0 ? m + period : m;
    return m < n ? m : period - 1 - m;
}

static inline int32_t min32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t max32(int32_t a, int32_t b) { return a > b ? a : b; }

/* The value of rank RANK (0-based) among the WINDOW² gathered: min/max networks for the
 * windows the study uses (no data-dependent branches), insertion sort for the others. */
#if WINDOW == 2
static inline int32_t rank_value(int32_t *v) { /* the 3rd smallest of 4: the lower of the two largest */
    return max32(min32(max32(v[0], v[1]), max32(v[2], v[3])), max32(min32(v[0], v[1]), min32(v[2], v[3])));
}
#elif WINDOW == 3
#define SORT2(a, b) do { const int32_t lo_ = min32(a, b); (b) = max32(a, b); (a) = lo_; } while (0)
static inline int32_t rank_value(int32_t *p) { /* median of 9, 19 exchanges (Paeth; Devillard's opt_med9) */
    SORT2(p[1], p[2]); SORT2(p[4], p[5]); SORT2(p[7], p[8]);
    SORT2(p[0], p[1]); SORT2(p[3], p[4]); SORT2(p[6], p[7]);
    SORT2(p[1], p[2]); SORT2(p[4], p[5]); SORT2(p[7], p[8]);
    SORT2(p[0], p[3]); SORT2(p[5], p[8]); SORT2(p[4], p[7]);
    SORT2(p[3], p[6]); SORT2(p[1], p[4]); SORT2(p[2], p[5]);
    SORT2(p[4], p[7]); SORT2(p[4], p[2]); SORT2(p[6], p[4]);
    SORT2(p[4], p[2]);
    return p[4];
}
#else
static inline int32_t rank_value(int32_t *v) {
    for (int i = 1; i < WINDOW * WINDOW; ++i) {
        const int32_t x = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] > x) {
            v[j + 1] = v[j];
            --j;
        }
        v[j + 1] = x;
    }
    return v[RANK];
}
#endif

static inline int32_t load(const void *base, int32_t index, int wide) {
    return wide ? ((const int16_t *)base)[index] : ((const int8_t *)base)[index];
}

static inline void store(void *base, int32_t index, int32_t value, int wide) {
    if (wide) {
        ((int16_t *)base)[index] = (int16_t)value;
    } else {
        ((int8_t *)base)[index] = (int8_t)value;
    }
}

/* Row `row` as it was before filtering: rows below the current one are untouched in the
 * image, the current one and those above are in the ring. */
static inline const uint8_t *original_row(uint8_t *image, int32_t row, int32_t current, uint32_t row_bytes) {
    return row > current ? image + (uint32_t)row * row_bytes : ring + (uint32_t)(row % RING_ROWS) * row_bytes;
}

/* One H×W×C image, rows top to bottom, in place.  Inlined into one copy per element width
 * so that the loads are not dispatched per value. */
static inline __attribute__((always_inline)) void median_image(uint8_t *image, int32_t height, int32_t width,
                                                               int32_t channels, int wide) {
    const uint32_t row_bytes = (uint32_t)(width * channels) << wide;
    for (int32_t i = 0; i < height; ++i) {
        memcpy(ring + (uint32_t)(i % RING_ROWS) * row_bytes, image + (uint32_t)i * row_bytes, row_bytes);
        const uint8_t *rows[WINDOW];
        for (int d = 0; d < WINDOW; ++d) {
            rows[d] = original_row(image, reflect(i - BEFORE + d, height), i, row_bytes);
        }
        uint8_t *out = image + (uint32_t)i * row_bytes;
        for (int32_t j = 0; j < width; ++j) {
            int32_t cols[WINDOW];
            for (int d = 0; d < WINDOW; ++d) {
                cols[d] = reflect(j - BEFORE + d, width) * channels;
            }
            for (int32_t c = 0; c < channels; ++c) {
                int32_t values[WINDOW * WINDOW];
                for (int di = 0; di < WINDOW; ++di) {
                    for (int dj = 0; dj < WINDOW; ++dj) {
                        values[di * WINDOW + dj] = load(rows[di], cols[dj] + c, wide);
                    }
                }
                store(out, j * channels + c, rank_value(values), wide);
            }
        }
    }
}

int preprocess_input(const tm_model_t *model) {
    void *data;
    const tm_tensor_t *t = stage_input(model, &data);
    if (!t || t->rank != 4) {
        return 1;
    }
    const int wide = t->dtype == TM_INT16;
    const int32_t height = t->dims[1], width = t->dims[2], channels = t->dims[3];
    const uint32_t image_bytes = (uint32_t)(height * width * channels) << wide;
    if ((((uint32_t)RING_ROWS * (uint32_t)(width * channels)) << wide) > sizeof ring) {
        return 1;
    }
    for (int32_t n = 0; n < t->dims[0]; ++n) {
        uint8_t *image = (uint8_t *)data + (uint32_t)n * image_bytes;
        if (wide) {
            median_image(image, height, width, channels, 1);
        } else {
            median_image(image, height, width, channels, 0);
        }
    }
    return 0;
}

#elif TM_PREPROCESS == TM_PRE_NONE

int preprocess_input(const tm_model_t *model) {
    (void)model;
    return 0;
}

#else
#error "TM_PREPROCESS must be 0 (none), 1 (squeeze) or 2 (median)"
#endif
