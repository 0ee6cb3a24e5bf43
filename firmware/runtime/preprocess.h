/* preprocess.h - the optional input pre-processing stage (docs/defenses.md,
 * "On the chip"): a pre-processing defense applied to the quantized input
 * tensor in place, before tm_invoke, so that its cost is measured on the chip.
 *
 * Chosen at build time (host/build.py, `make flash PREPROCESS=squeeze:4`):
 *   TM_PREPROCESS        0 none, 1 bit-depth squeezing, 2 median filter
 *   TM_PREPROCESS_PARAM  bits (1..16) or window (1..5)
 *   TM_PREPROCESS_Q_LO, TM_PREPROCESS_Q_HI   squeezing: the integers of the
 *                        input range ends (host/defenses/integer.py grid_range)
 *   TM_PREPROCESS_RING_BYTES  median: bytes of the row ring (window//2 + 1 rows)
 * The arithmetic is host/defenses/integer.py's, bit for bit. */
#ifndef TM_PREPROCESS_H
#define TM_PREPROCESS_H

#include <stdint.h>

#include "tm_engine.h"

#define TM_PRE_NONE 0
#define TM_PRE_SQUEEZE 1
#define TM_PRE_MEDIAN 2

#ifndef TM_PREPROCESS
#define TM_PREPROCESS TM_PRE_NONE
#endif
#ifndef TM_PREPROCESS_PARAM
#define TM_PREPROCESS_PARAM 0
#endif

/* The stage this firmware was built with (TM_PRE_*) and its parameter. */
uint8_t preprocess_kind(void);
uint8_t preprocess_param(void);

/* Applies the stage to the model's first input tensor, in place; 0 if done
 * (or there is no stage), else the input does not suit the stage (dtype or
 * shape) and is left as it was. */
int preprocess_input(const tm_model_t *model);

#endif /* TM_PREPROCESS_H */
