/* mlperf_mode.c - MLPerf Tiny compatibility mode (built with -DTM_MLPERF_MODE, `make flash MLPERF=1`):
 * instead of the framed binary protocol (protocol.c) the firmware speaks the EEMBC / MLPerf Tiny
 * benchmark's text protocol in performance mode, so the MLPerf Tiny runner (EnergyRunner or the
 * open-source runner, perf mode: the DUT connected directly) can drive it.  docs/mlperf.md.
 *
 * Commands end with '%' (leading spaces, CR and LF are ignored); tokens are separated by spaces.
 * Every command is answered, then "m-ready":
 *   name              m-name-dut-[slingshot]
 *   timestamp         m-lap-us-<microseconds>
 *   profile           m-profile-[slingshot <firmware version>] and m-model-[<model id>]
 *   help              the command list
 *   db load N         m-[Expecting N bytes]: (re)start loading N input bytes
 *   db HHHH...        hex bytes appended to the buffer; m-load-done once N bytes are in
 *   db print          m-buffer-hh-hh-... (8 bytes a line)
 *   infer N [W]       the loaded input through W warm-up and N timed inferences (defaults 1, 10):
 *                     m-warmup-start-W, m-warmup-done, m-infer-start-N, m-lap-us-T0,
 *                     m-lap-us-T1, m-infer-done, m-results-[...]
 *   results           m-results-[s0,s1,...]: the outputs of the last inference, dequantized, 3 decimals
 *                     (ad01: m-results-[s], one anomaly score, below)
 * Errors are "e-[...]" lines.  At boot: m-timestamp-mode-performance, m-lap-us-T, m-init-done, m-ready.
 *
 * The `db` bytes are the model's input tensors, concatenated, in their own type (what the framed
 * protocol's INFER takes).  Per benchmark, as the reference submissions' th_load_tensor / th_results:
 *   ic01, vww01  the data files are uint8 pixels: 128 is subtracted from every byte for an int8 input
 *                (-DTM_MLPERF_INPUT_UINT8=1 forces that for any model id, =0 turns it off);
 *   ad01         the result is one anomaly score, m-results-[%0.3f] of the mean squared error between
 *                the autoencoder's output and its input over all its elements (calculate_result of the
 *                reference: single precision, summed in order, divided by the element count).
 * Timestamps: SysTick ticks * 10^6 / CPU_CLOCK_HZ (ticks_now, 64-bit).
 * No heap, no printf: fixed buffers and the formatting below. */
#ifdef TM_MLPERF_MODE
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "protocol.h"
#include "tm_engine.h"

#ifndef TM_MLPERF_DB_BYTES
#define TM_MLPERF_DB_BYTES 4096u
#endif
#ifndef TM_MLPERF_CMD_BYTES
#define TM_MLPERF_CMD_BYTES 1024u
#endif
#ifndef TM_MLPERF_MODEL_ID
#define TM_MLPERF_MODEL_ID NULL /* NULL: the model's name */
#endif
#ifndef TM_MLPERF_INPUT_UINT8
#define TM_MLPERF_INPUT_UINT8 (-1) /* -1: by model id (ic01, vww01 with int8 inputs); 0 off; 1 on */
#endif
#define MAX_TOKENS 4

static char cmd[TM_MLPERF_CMD_BYTES + 1];
static uint32_t cmd_len;
static int cmd_overflow;
static uint8_t db[TM_MLPERF_DB_BYTES] __attribute__((aligned(8)));
static uint32_t db_size, db_pos;
static int have_results;
static int input_uint8;  /* subtract 128 from every db byte (uint8 data files, int8 input) */
static int anomaly_score; /* ad01: one score, the MSE between output and input */

/* ---- output ------------------------------------------------------------------------------ */

static void put(const char *s) { uart_write((const uint8_t *)s, strlen(s)); }

static void put_u64(uint64_t v) {
    char buf[21];
    int i = 20;
    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u);
    put(&buf[i]);
}

static void put_hex2(uint8_t b) {
    static const char digits[] = "0123456789abcdef";
    const char s[3] = {digits[b >> 4], digits[b & 0xFu], '\0'};
    put(s);
}

/* round(|v| * 1000) half away from zero, as the host computes it (docs/mlperf.md) */
static void put_fixed3(double v) {
    if (v != v) {
        put("nan");
        return;
    }
    const int negative = v < 0.0;
    const double magnitude = negative ? -v : v;
    if (magnitude >= 1e15) {
        put(negative ? "-inf" : "inf");
        return;
    }
    const uint64_t milli = (uint64_t)(magnitude * 1000.0 + 0.5);
    if (negative && milli != 0u) {
        put("-");
    }
    put_u64(milli / 1000u);
    const uint32_t frac = (uint32_t)(milli % 1000u);
    const char s[5] = {'.', (char)('0' + frac / 100u), (char)('0' + frac / 10u % 10u), (char)('0' + frac % 10u), '\0'};
    put(s);
}

static uint64_t micros(void) { return ticks_now() * 1000000u / (uint64_t)CPU_CLOCK_HZ; }

static void timestamp(void) {
    put("m-lap-us-");
    put_u64(micros());
    put("\r\n");
}

/* ---- the model ----------------------------------------------------------------------------- */

static uint32_t io_bytes(const int16_t *indices, uint32_t n) {
    uint32_t total = 0;
    for (uint32_t i = 0; i < n; ++i) {
        total += tm_model.tensors[indices[i]].bytes;
    }
    return total;
}

static void load_inputs(void) {
    const uint8_t *src = db;
    for (uint32_t i = 0; i < tm_model.n_inputs; ++i) {
        const int16_t index = tm_model.inputs[i];
        uint8_t *dst = (uint8_t *)tm_tensor_ptr(&tm_model, index);
        const uint32_t n = tm_model.tensors[index].bytes;
        if (input_uint8) {
            for (uint32_t k = 0; k < n; ++k) {
                dst[k] = (uint8_t)(src[k] - 128u);
            }
        } else {
            memcpy(dst, src, n);
        }
        src += n;
    }
}

static int infer_once(void) {
    load_inputs(); /* the arena is reused: the inputs are consumed by every inference */
    return tm_invoke(&tm_model) == TM_OK;
}

static double element(const tm_tensor_t *t, uint32_t k) {
    const uint8_t *p = (const uint8_t *)tm_tensor_ptr(&tm_model, (int)(t - tm_model.tensors));
    int64_t q;
    switch (t->dtype) {
    case TM_INT8: q = ((const int8_t *)p)[k]; break;
    case TM_UINT8: q = p[k]; break;
    case TM_INT16: q = ((const int16_t *)p)[k]; break;
    case TM_INT32: q = ((const int32_t *)p)[k]; break;
    case TM_INT64: q = ((const int64_t *)p)[k]; break;
    default: return (double)((const float *)p)[k]; /* TM_FLOAT32 */
    }
    return (double)(q - t->zero_point) * (double)t->scale;
}

static uint32_t element_size(uint8_t dtype) {
    switch (dtype) {
    case TM_INT8:
    case TM_UINT8: return 1u;
    case TM_INT16: return 2u;
    case TM_INT64: return 8u;
    default: return 4u;
    }
}

/* Element k of a quantized or float tensor stored at p, dequantized in single precision as the
 * reference's DequantizeInt8ToFloat: (float)(q - zero_point) * scale. */
static float element_f32(const tm_tensor_t *t, const uint8_t *p, uint32_t k) {
    int32_t q;
    switch (t->dtype) {
    case TM_INT8: q = ((const int8_t *)p)[k]; break;
    case TM_UINT8: q = p[k]; break;
    case TM_INT16: q = ((const int16_t *)p)[k]; break;
    default: {
        float f;
        memcpy(&f, p + 4u * k, sizeof f); /* TM_FLOAT32; the db buffer's bytes need not be aligned */
        return f;
    }
    }
    return (float)(q - t->zero_point) * t->scale;
}

/* ad01: the mean squared error between the first output and the first input (the input as loaded in
 * `db`, before the engine consumed it), summed in order in single precision as the reference's
 * calculate_result; -1 when the two do not have the same element count. */
static int anomaly_mse(float *mse) {
    const tm_tensor_t *in = &tm_model.tensors[tm_model.inputs[0]];
    const tm_tensor_t *out = &tm_model.tensors[tm_model.outputs[0]];
    const uint32_t count = out->bytes / element_size(out->dtype);
    if (count == 0u || in->bytes / element_size(in->dtype) != count || in->dtype == TM_INT32 ||
        in->dtype == TM_INT64 || out->dtype == TM_INT32 || out->dtype == TM_INT64) {
        return -1;
    }
    const uint8_t *out_p = (const uint8_t *)tm_tensor_ptr(&tm_model, tm_model.outputs[0]);
    float diffsum = 0.0f;
    for (uint32_t k = 0; k < count; ++k) {
        const float diff = element_f32(out, out_p, k) - element_f32(in, db, k);
        diffsum += diff * diff;
    }
    *mse = diffsum / (float)count;
    return 0;
}

static void results(void) {
    if (!have_results) {
        put("e-[No results: run infer first]\r\n");
        return;
    }
    if (anomaly_score) {
        float mse = 0.0f;
        if (anomaly_mse(&mse) != 0) {
            put("e-[ad01: the model's first output and input differ in size; no anomaly score]\r\n");
            return;
        }
        put("m-results-[");
        put_fixed3((double)mse);
        put("]\r\n");
        return;
    }
    put("m-results-[");
    int first = 1;
    for (uint32_t i = 0; i < tm_model.n_outputs; ++i) {
        const tm_tensor_t *t = &tm_model.tensors[tm_model.outputs[i]];
        const uint32_t count = t->bytes / element_size(t->dtype);
        for (uint32_t k = 0; k < count; ++k) {
            if (!first) {
                put(",");
            }
            first = 0;
            put_fixed3(element(t, k));
        }
    }
    put("]\r\n");
}

/* ---- commands ---------------------------------------------------------------------------- */

/* A decimal number, or -1. */
static int64_t parse_uint(const char *s) {
    if (s == NULL || *s == '\0') {
        return -1;
    }
    int64_t v = 0;
    for (; *s; ++s) {
        if (*s < '0' || *s > '9' || v > 100000000) {
            return -1;
        }
        v = v * 10 + (*s - '0');
    }
    return v;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void db_command(char **tok, int n) {
    if (n < 2) {
        put("e-[Command 'db' requires a subcommand]\r\n");
    } else if (strcmp(tok[1], "load") == 0) {
        const int64_t size = n > 2 ? parse_uint(tok[2]) : -1;
        if (size <= 0) {
            put("e-[Command 'db load' requires the # of bytes, > 0]\r\n");
        } else if ((uint64_t)size > TM_MLPERF_DB_BYTES) {
            put("e-[Supplied buffer size ");
            put_u64((uint64_t)size);
            put(" exceeds maximum of ");
            put_u64(TM_MLPERF_DB_BYTES);
            put("]\r\n");
        } else {
            db_size = (uint32_t)size;
            db_pos = 0;
            put("m-[Expecting ");
            put_u64(db_size);
            put(" bytes]\r\n");
        }
    } else if (strcmp(tok[1], "print") == 0) {
        for (uint32_t i = 0; i < db_pos; ++i) {
            put(i % 8u == 0 ? "m-buffer-" : "-");
            put_hex2(db[i]);
            if (i % 8u == 7u || i + 1u == db_pos) {
                put("\r\n");
            }
        }
    } else {
        const char *hex = tok[1];
        const size_t digits = strlen(hex);
        if (digits % 2u != 0u) {
            put("e-[Insufficent number of hex digits]\r\n");
            return;
        }
        for (size_t i = 0; i < digits; i += 2u) {
            const int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1u]);
            if (hi < 0 || lo < 0) {
                put("e-[Invalid hex digit]\r\n");
                return;
            }
            if (db_pos >= db_size) {
                put("e-[More bytes than 'db load' announced]\r\n");
                return;
            }
            db[db_pos++] = (uint8_t)(hi * 16 + lo);
            if (db_pos == db_size) {
                put("m-load-done\r\n");
                return; /* the rest of the digits is disregarded, as the reference does */
            }
        }
    }
}

static void infer_command(char **tok, int n) {
    int64_t iterations = 1, warmup = 10;
    if (n > 1 && (iterations = parse_uint(tok[1])) <= 0) {
        put("e-[Inference iterations must be >0]\r\n");
        return;
    }
    if (n > 2 && (warmup = parse_uint(tok[2])) < 0) {
        put("e-[Inference warmup must be >=0]\r\n");
        return;
    }
    const uint32_t needed = io_bytes(tm_model.inputs, tm_model.n_inputs);
    if (db_pos != needed) {
        put("e-[The model takes ");
        put_u64(needed);
        put(" input bytes; 'db' holds ");
        put_u64(db_pos);
        put("]\r\n");
        return;
    }
    int ok = 1;
    put("m-warmup-start-");
    put_u64((uint64_t)warmup);
    put("\r\n");
    uart_rx_hold(1); /* no receive interrupt inside the measured work (docs/protocol.md) */
    for (int64_t i = 0; i < warmup; ++i) {
        ok &= infer_once();
    }
    uart_rx_hold(0);
    put("m-warmup-done\r\nm-infer-start-");
    put_u64((uint64_t)iterations);
    put("\r\n");
    timestamp();
    uart_rx_hold(1);
    for (int64_t i = 0; i < iterations; ++i) {
        ok &= infer_once();
    }
    uart_rx_hold(0);
    timestamp();
    put("m-infer-done\r\n");
    have_results = ok;
    if (!ok) {
        put("e-[Inference failed]\r\n");
        return;
    }
    results();
}

static const char *model_id(void) {
    const char *id = TM_MLPERF_MODEL_ID;
    return id != NULL ? id : tm_model.name;
}

/* The per-benchmark conversions of the reference submissions (th_load_tensor, th_results). */
static void configure_benchmark(void) {
    const char *id = model_id();
    int all_int8 = tm_model.n_inputs > 0u;
    for (uint32_t i = 0; i < tm_model.n_inputs; ++i) {
        all_int8 &= tm_model.tensors[tm_model.inputs[i]].dtype == TM_INT8;
    }
    const int pixels = strcmp(id, "ic01") == 0 || strcmp(id, "vww01") == 0;
    input_uint8 = TM_MLPERF_INPUT_UINT8 < 0 ? pixels && all_int8 : TM_MLPERF_INPUT_UINT8 != 0;
    anomaly_score = strcmp(id, "ad01") == 0;
}

static void dispatch(char *line) {
    char *tok[MAX_TOKENS];
    int n = 0;
    for (char *p = line; *p && n < MAX_TOKENS;) {
        while (*p == ' ') {
            *p++ = '\0';
        }
        if (*p) {
            tok[n++] = p;
            while (*p && *p != ' ') {
                ++p;
            }
        }
    }
    if (n == 0) {
        put("e-[Empty command]\r\n");
    } else if (strcmp(tok[0], "name") == 0) {
        put("m-name-dut-[slingshot]\r\n");
    } else if (strcmp(tok[0], "timestamp") == 0) {
        timestamp();
    } else if (strcmp(tok[0], "profile") == 0) {
        put("m-profile-[slingshot " TM_FIRMWARE_VERSION "]\r\nm-model-[");
        put(model_id());
        put("]\r\n");
    } else if (strcmp(tok[0], "help") == 0) {
        put("slingshot " TM_FIRMWARE_VERSION " MLPerf Tiny mode\r\n"
            "name, timestamp, profile, help, db load N, db HH[HH]*, db print, infer N [W=10], results\r\n");
    } else if (strcmp(tok[0], "db") == 0) {
        db_command(tok, n);
    } else if (strcmp(tok[0], "infer") == 0) {
        infer_command(tok, n);
    } else if (strcmp(tok[0], "results") == 0) {
        results();
    } else {
        put("e-[Unknown command: ");
        put(tok[0]);
        put("]\r\n");
    }
}

void mlperf_run(void) {
    configure_benchmark();
    put("m-timestamp-mode-performance\r\n");
    timestamp();
    put("m-init-done\r\nm-ready\r\n");
    for (;;) {
        uint8_t c;
        if (!uart_try_read(&c)) {
            uart_wait_rx();
            continue;
        }
        if (c == '%') {
            cmd[cmd_len] = '\0';
            if (cmd_overflow) {
                put("e-[Command longer than " );
                put_u64(TM_MLPERF_CMD_BYTES);
                put(" characters]\r\n");
            } else {
                dispatch(cmd);
            }
            put("m-ready\r\n");
            cmd_len = 0;
            cmd_overflow = 0;
        } else if (cmd_len == 0 && (c == ' ' || c == '\r' || c == '\n')) {
            /* between commands */
        } else if (cmd_len < TM_MLPERF_CMD_BYTES) {
            cmd[cmd_len++] = (char)c;
        } else {
            cmd_overflow = 1;
        }
    }
}
#else
typedef int tm_mlperf_mode_disabled; /* ISO C: a translation unit is not empty */
#endif /* TM_MLPERF_MODE */
