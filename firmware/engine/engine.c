/* engine.c - walks the compiled model's op list (see tm_engine.h). */
#include "tm_engine.h"

#include "tm_kernels.h"

static int failed_op = -1;

__attribute__((weak)) void tm_op_boundary_hook(int op_index) { (void)op_index; }

void *tm_tensor_ptr(const tm_model_t *model, int tensor_index) {
    if (tensor_index < 0 || tensor_index >= model->n_tensors) {
        return 0;
    }
    const tm_tensor_t *t = &model->tensors[tensor_index];
    if (t->data != 0) {
        return (void *)t->data; /* constants are only ever read */
    }
    return t->arena_offset >= 0 ? model->arena + t->arena_offset : 0;
}

/* Kernel selection at build time: the most specific optimized kernel the build
 * has (Helium, then DSP), else the portable one. */
#if defined(TM_OPT_MVE)
#define TM_CONV_2D tm_kernel_conv_2d_mve
#define TM_FULLY_CONNECTED tm_kernel_fully_connected_mve
#elif defined(TM_OPT_DSP)
#define TM_CONV_2D tm_kernel_conv_2d_dsp
#define TM_FULLY_CONNECTED tm_kernel_fully_connected_dsp
#else
#define TM_CONV_2D tm_kernel_conv_2d
#define TM_FULLY_CONNECTED tm_kernel_fully_connected
#endif
#if defined(TM_OPT_DSP)
#define TM_DEPTHWISE_CONV_2D tm_kernel_depthwise_conv_2d_dsp
#define TM_ADD tm_kernel_add_dsp
#define TM_QUANTIZE tm_kernel_quantize_dsp
#define TM_DEQUANTIZE tm_kernel_dequantize_dsp
#else
#define TM_DEPTHWISE_CONV_2D tm_kernel_depthwise_conv_2d
#define TM_ADD tm_kernel_add
#define TM_QUANTIZE tm_kernel_quantize
#define TM_DEQUANTIZE tm_kernel_dequantize
#endif
/* Helium versions of the kernels above where ops_mve/ has one (each falls back itself). */
#if defined(TM_OPT_MVE)
#undef TM_ADD
#define TM_ADD tm_kernel_add_mve
#undef TM_DEPTHWISE_CONV_2D
#define TM_DEPTHWISE_CONV_2D tm_kernel_depthwise_conv_2d_mve
#endif

/* Pooling, int8: Helium, else DSP, else portable (each falls back itself). */
#if defined(TM_OPT_MVE)
#define TM_MAX_POOL_2D tm_kernel_max_pool_2d_mve
#define TM_AVERAGE_POOL_2D tm_kernel_average_pool_2d_mve
#elif defined(TM_OPT_DSP)
#define TM_MAX_POOL_2D tm_kernel_max_pool_2d_dsp
#define TM_AVERAGE_POOL_2D tm_kernel_average_pool_2d_dsp
#else
#define TM_MAX_POOL_2D tm_kernel_max_pool_2d
#define TM_AVERAGE_POOL_2D tm_kernel_average_pool_2d
#endif

typedef tm_status_t (*tm_kernel_fn)(const tm_model_t *model, const tm_op_t *op);

static tm_kernel_fn kernel_for(uint8_t kind) {
    switch (kind) {
    case TM_OP_CONV_2D: return TM_CONV_2D;
    case TM_OP_DEPTHWISE_CONV_2D: return TM_DEPTHWISE_CONV_2D;
    case TM_OP_FULLY_CONNECTED: return TM_FULLY_CONNECTED;
    case TM_OP_MAX_POOL_2D: return TM_MAX_POOL_2D;
    case TM_OP_AVERAGE_POOL_2D: return TM_AVERAGE_POOL_2D;
    case TM_OP_RESHAPE: return tm_kernel_reshape;
    case TM_OP_SOFTMAX: return tm_kernel_softmax;
    case TM_OP_ADD: return TM_ADD;
    case TM_OP_MUL: return tm_kernel_mul;
    case TM_OP_PAD: return tm_kernel_pad;
    case TM_OP_LOGISTIC: return tm_kernel_logistic;
    case TM_OP_MEAN: return tm_kernel_mean;
    case TM_OP_CONCATENATION: return tm_kernel_concatenation;
    case TM_OP_QUANTIZE: return TM_QUANTIZE;
    case TM_OP_DEQUANTIZE: return TM_DEQUANTIZE;
    default: return 0;
    }
}

tm_status_t tm_invoke(const tm_model_t *model) {
    failed_op = -1;
    for (int i = 0; i < model->n_ops; ++i) {
        tm_op_boundary_hook(i);
        const tm_op_t *op = &model->ops[i];
        tm_kernel_fn kernel = kernel_for(op->kind);
        tm_status_t status = kernel ? kernel(model, op) : TM_ERR_UNSUPPORTED;
        if (status != TM_OK) {
            failed_op = i;
            return status;
        }
    }
    tm_op_boundary_hook(model->n_ops);
    return TM_OK;
}

int tm_failed_op(void) { return failed_op; }
