/*
 * tm_engine.h - the inference engine's data model and entry points.
 *
 * The host-side model compiler (host/compiler) turns a .tflite flatbuffer into
 * C that defines one `const tm_model_t tm_model` plus a static arena.  The
 * engine walks the model's op list and calls one kernel per op.  Everything a
 * kernel needs that TFLite computes at Prepare time (requantization
 * multipliers and shifts, padding, activation bounds) is computed by the
 * compiler exactly as TFLite Micro does and stored in the op's params, so the
 * kernels only do integer arithmetic.
 *
 * No dynamic allocation: tensors live either in flash (constants) or at a
 * planned offset in the arena.
 */
#ifndef TM_ENGINE_H
#define TM_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TM_MAX_RANK 5

typedef enum {
    TM_OK = 0,
    TM_ERR_BAD_MODEL = 1,   /* a kernel met a tensor/params combination it cannot run */
    TM_ERR_UNSUPPORTED = 2, /* op kind unknown to this firmware build */
} tm_status_t;

/* Element types; values are part of the wire protocol (docs/protocol.md). */
typedef enum {
    TM_INT8 = 0,
    TM_INT16 = 1,
    TM_INT32 = 2,
    TM_FLOAT32 = 3,
    TM_INT64 = 4,
    TM_UINT8 = 5,
} tm_dtype_t;

typedef struct {
    uint8_t dtype;          /* tm_dtype_t */
    uint8_t rank;
    uint16_t reserved;
    int32_t dims[TM_MAX_RANK];
    uint32_t bytes;         /* element count * element size */
    int32_t arena_offset;   /* byte offset in the arena, or -1 for a constant */
    const void *data;       /* constant data (flash), NULL for arena tensors */
    float scale;            /* per-tensor scale (first scale when per-channel) */
    int32_t zero_point;
} tm_tensor_t;

/* Op kinds.  Numbering is ours (not TFLite's builtin codes). */
typedef enum {
    TM_OP_CONV_2D = 1,
    TM_OP_DEPTHWISE_CONV_2D = 2,
    TM_OP_FULLY_CONNECTED = 3,
    TM_OP_MAX_POOL_2D = 4,
    TM_OP_AVERAGE_POOL_2D = 5,
    TM_OP_RESHAPE = 6,
    TM_OP_SOFTMAX = 7,
    TM_OP_ADD = 8,
    TM_OP_QUANTIZE = 9,
    TM_OP_DEQUANTIZE = 10,
    TM_OP_MUL = 11,
    TM_OP_PAD = 12,
    TM_OP_CONCATENATION = 13,
    TM_OP_LOGISTIC = 14,
    TM_OP_MEAN = 15,
    TM_OP_COUNT_ /* keep last */
} tm_op_kind_t;

typedef struct {
    uint8_t kind;           /* tm_op_kind_t */
    uint8_t n_inputs;
    uint8_t n_outputs;
    uint8_t reserved;
    const int16_t *inputs;  /* tensor indices; -1 marks an absent optional input */
    const int16_t *outputs;
    const void *params;     /* one of the tm_*_params_t below, by kind */
} tm_op_t;

/* CONV_2D and DEPTHWISE_CONV_2D.  Tensors: in0 input NHWC, in1 filter
 * (conv: OHWI, depthwise: 1HW(C*M)), in2 bias int32 (optional); out0 NHWC. */
typedef struct {
    int16_t stride_h, stride_w;
    int16_t dilation_h, dilation_w;
    int16_t pad_h, pad_w;             /* top / left padding (TFLite: total/2) */
    int16_t depth_multiplier;         /* depthwise only, else 1 */
    int16_t n_multipliers;            /* == output channels (per-channel) */
    int16_t acc64;                    /* int16x8: 64-bit accumulator + requantize */
    /* int16x8 CONV_2D with an int64 bias or none, from the compiler: 1 when every channel has
     * |bias| + 32768 * sum |w| < 2^31 and a non-negative multiplier (its int32 sums are exact), 2 when
     * one has not, 0 when not computed (tm_dsp_s16_channels_fit then looks at the weights) */
    int16_t acc32_fits;
    int32_t input_offset;             /* -input zero point */
    int32_t output_offset;            /* +output zero point */
    int32_t act_min, act_max;         /* fused activation, in output's type */
    const int32_t *out_multiplier;    /* Q31 multipliers, one per out channel */
    const int32_t *out_shift;         /* TFLite shift convention: >0 left */
    /* CONV_2D int8 weights widened to int16 by the compiler for the DSP kernel's wide path
     * (ops_dsp/conv_2d_wide.c, widen_weights' layout for all channels, doubled if weights16_doubled),
     * or NULL: the model's C file holds them only where TM_CONV_WEIGHTS16 is set (tm_kernel_table.h). */
    const int16_t *weights16;
    int32_t weights16_doubled;
    /* CONV_2D 3x3 stride-1 filters in the Winograd domain for the DSP kernel's Winograd paths, int16: int8 ops'
     * F(2x2, 3x3) (ops_dsp/conv_2d_winograd.c: U = (2G) g (2G)^T), int16x8 ops' F(2, 3) along the rows
     * (ops_dsp/conv_2d_winograd16.c: U = (2G) g), or NULL: the model's C file holds them only where
     * TM_CONV_WINOGRAD (int8) or TM_CONV_WINOGRAD16 (int16x8) is set (tm_kernel_table.h). */
    const int16_t *winograd;
    /* int8 CONV_2D and 3x3 DEPTHWISE_CONV_2D: per output channel the words M, c, r that tm_dsp_wide_rq
     * (ops_dsp/conv_2d_wide.c) finds from the weights, r = 0 where it finds none, computed by the compiler
     * (host/compiler/ops/conv.py, wide_rq_table); or NULL: the kernel computes them.  The model's C file
     * holds them only where TM_CONV_WIDE_RQ is set (tm_kernel_table.h). */
    const int32_t *wide_rq;
} tm_conv_params_t;

/* FULLY_CONNECTED.  in0 input (flattened to [batches, depth]),
 * in1 weights [units, depth], in2 bias (optional); out0 [batches, units]. */
typedef struct {
    int32_t input_offset;
    int32_t filter_offset;            /* -weights zero point (0 for int8) */
    int32_t output_offset;
    int32_t act_min, act_max;
    int16_t n_multipliers;            /* 1 (per-tensor) or units (per-channel) */
    int16_t acc64;                    /* int16x8: 64-bit accumulator + requantize */
    const int32_t *out_multiplier;
    const int32_t *out_shift;
    /* int8 weights widened to int16 and doubled by the compiler for the DSP kernel, with the doubled bias
     * (ops_dsp/fully_connected.c, "Pre-widened weights": units in groups of 6, then of 4, each group's
     * biases first, depth padded to 4; only when |bias| + depth * 255 * 128 < 2^30), or NULL: the model's
     * C file holds them only where TM_FC_WEIGHTS16 is set (tm_kernel_table.h). */
    const int16_t *weights16;
} tm_fc_params_t;

/* MAX_POOL_2D, AVERAGE_POOL_2D. */
typedef struct {
    int16_t filter_h, filter_w;
    int16_t stride_h, stride_w;
    int16_t pad_h, pad_w;
    int32_t act_min, act_max;
} tm_pool_params_t;

/* SOFTMAX.  int8 -> int8 (scale 1/256, zero point -128): gemmlowp fixed
 * point.  int16 -> int16 (scale 1/32768, zero point 0): TFLM's LUT method,
 * with the exp and 1/(1+x) tables (513 entries each) computed by the compiler. */
typedef struct {
    int32_t input_multiplier;
    int32_t input_left_shift;         /* int16: a signed QuantizeMultiplier shift */
    int32_t diff_min;
    const int16_t *exp_lut;           /* int16 only */
    const int16_t *one_over_one_plus_x_lut;
} tm_softmax_params_t;

/* ADD (int8, int16): inputs rescaled to a common scale with `left_shift`
 * bits of headroom, summed, rescaled to the output.  Broadcasting follows
 * NumPy rules (dims of 1 repeat). */
typedef struct {
    int32_t input1_offset, input2_offset, output_offset;
    int32_t input1_multiplier, input2_multiplier, output_multiplier;
    int32_t input1_shift, input2_shift, output_shift;   /* <= 0 */
    int32_t left_shift;
    int32_t act_min, act_max;
} tm_add_params_t;

/* MUL (int8, int16): (x1 - z1) * (x2 - z2) requantized by s1*s2/so. */
typedef struct {
    int32_t input1_offset, input2_offset, output_offset;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
} tm_mul_params_t;

/* PAD / PADV2: before/after padding per output dim (rank aligned to the
 * output), filled with `pad_value` (the output zero point, or PADV2's constant). */
typedef struct {
    int32_t before[TM_MAX_RANK];
    int32_t pad_value;
} tm_pad_params_t;

/* CONCATENATION along `axis` (inputs and output share one quantization). */
typedef struct {
    int32_t axis;
} tm_concat_params_t;

/* LOGISTIC int8 -> int8 (output scale 1/256, zero point -128): inputs beyond
 * +-input_range_radius saturate; others go through gemmlowp's Q4.27 logistic.
 * int16 -> int16 (zero points 0, output scale 2^-15): the input is rescaled by
 * (x * input_multiplier + round) >> input_left_shift (multiplier 0: x * 3) and
 * interpolated in TFLM's 256-entry 0.16 sigmoid table (computed by the compiler). */
typedef struct {
    int32_t input_zero_point;         /* int8 only */
    int32_t input_range_radius;       /* int8 only */
    int32_t input_multiplier;
    int32_t input_left_shift;
    const uint16_t *sigmoid_lut;      /* int16 only: sigmoid(i / 24) * 2^16, i = 0..255 */
} tm_logistic_params_t;

/* MEAN over the axes in `reduce_mask` (bit d = input dim d), int8/int16, on
 * the path TFLM takes: 1 = int8 4-D mean over H,W with keep_dims (rescale by
 * s_in/s_out, then a rounded division by the count); 2 = every other case
 * (the count folded into the multiplier by the compiler). */
typedef struct {
    int32_t mode;
    int32_t reduce_mask;
    int32_t multiplier, shift;
    int32_t input_zero_point, output_zero_point;
} tm_mean_params_t;

/* QUANTIZE (float32 -> int8/int16, or int -> int requantize) and
 * DEQUANTIZE (int8/int16 -> float32). */
typedef struct {
    float scale;                      /* of the quantized side (float <-> int) */
    int32_t zero_point;               /* of the quantized side (float <-> int) */
    int32_t input_offset;             /* requantize: -input zero point */
    int32_t output_offset;            /* requantize: +output zero point */
    int32_t multiplier, shift;        /* requantize: input scale / output scale */
} tm_quantize_params_t;

typedef struct {
    const char *name;
    const tm_tensor_t *tensors;
    const tm_op_t *ops;
    const int16_t *inputs;
    const int16_t *outputs;
    uint8_t *arena;
    uint32_t arena_bytes;
    uint16_t n_tensors;
    uint16_t n_ops;
    uint8_t n_inputs;
    uint8_t n_outputs;
    uint8_t sha256[32];               /* of the .tflite file the C was made from */
} tm_model_t;

/* The model the compiler generated (model.c). */
extern const tm_model_t tm_model;

/* Runs every op in order.  Inputs must have been written to tm_tensor_ptr()
 * of each input tensor first; they are consumed (the arena is reused). */
tm_status_t tm_invoke(const tm_model_t *model);

/* Index of the op that failed in the last tm_invoke, or -1. */
int tm_failed_op(void);

/* Pointer to a tensor's data (arena or flash). */
void *tm_tensor_ptr(const tm_model_t *model, int tensor_index);

/* Optional per-op hook: the firmware may define it to time each op.  The
 * engine calls it before op i runs and once more with i == n_ops at the end. */
void tm_op_boundary_hook(int op_index);

#ifdef __cplusplus
}
#endif

#endif /* TM_ENGINE_H */
