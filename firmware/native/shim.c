/* shim.c - host-native entry points so the same engine runs on the build machine
 * (ctypes, see host/native.py): fast bit-exact testing without an emulator. */
#include <string.h>

#include "tm_engine.h"

/* Copies the concatenated inputs in, runs, copies the concatenated outputs out.
 * Returns 0 on success, -1 on a size mismatch, else the engine's status. */
int tm_native_run(const uint8_t *in, uint32_t in_len, uint8_t *out, uint32_t out_len) {
    uint32_t need_in = 0, need_out = 0;
    for (int i = 0; i < tm_model.n_inputs; ++i) {
        need_in += tm_model.tensors[tm_model.inputs[i]].bytes;
    }
    for (int i = 0; i < tm_model.n_outputs; ++i) {
        need_out += tm_model.tensors[tm_model.outputs[i]].bytes;
    }
    if (in_len != need_in || out_len != need_out) {
        return -1;
    }
    for (int i = 0; i < tm_model.n_inputs; ++i) {
        const uint32_t n = tm_model.tensors[tm_model.inputs[i]].bytes;
        memcpy(tm_tensor_ptr(&tm_model, tm_model.inputs[i]), in, n);
        in += n;
    }
    const tm_status_t status = tm_invoke(&tm_model);
    if (status != TM_OK) {
        return (int)status;
    }
    for (int i = 0; i < tm_model.n_outputs; ++i) {
        const uint32_t n = tm_model.tensors[tm_model.outputs[i]].bytes;
        memcpy(out, tm_tensor_ptr(&tm_model, tm_model.outputs[i]), n);
        out += n;
    }
    return 0;
}

int tm_native_failed_op(void) { return tm_failed_op(); }

/* Copies a tensor's current bytes (only meaningful for a model compiled
 * without arena reuse, where every tensor keeps its value after the run). */
int tm_native_tensor(int index, uint8_t *dst, uint32_t len) {
    if (index < 0 || index >= tm_model.n_tensors || tm_model.tensors[index].bytes != len) {
        return -1;
    }
    const void *src = tm_tensor_ptr(&tm_model, index);
    if (!src) {
        return -1;
    }
    memcpy(dst, src, len);
    return 0;
}
