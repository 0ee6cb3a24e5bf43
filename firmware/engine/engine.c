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

/* The kernel of each op kind: tm_kernel_table.h decides (at compile time, from the build's CPU
 * features); the switch is the engine's op table. */
static tm_kernel_fn kernel_for(uint8_t kind) {
    switch (kind) {
#define TM_KERNEL_CASE(KIND, name, scratch, mve, dsp, fpu) \
    case TM_OP_##KIND: return TM_SELECTED_KERNEL(name, mve, dsp, fpu);
        TM_KERNEL_TABLE(TM_KERNEL_CASE)
#undef TM_KERNEL_CASE
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
