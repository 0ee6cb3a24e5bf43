/* protocol.c - frame parser (a byte-driven state machine with an inter-byte
 * timeout, so a truncated frame never hangs the device) and the handlers. */
#include "protocol.h"

#include <string.h>

#include "board.h"
#include "crc32.h"
#include "tm_engine.h"

#ifndef BOARD_NAME
#define BOARD_NAME "unknown"
#endif
#ifndef BOARD_CPU
#define BOARD_CPU "unknown"
#endif
#ifndef CPU_CLOCK_HZ
#define CPU_CLOCK_HZ 25000000u
#endif
#define FRAME_TIMEOUT_TICKS ((uint64_t)CPU_CLOCK_HZ / 10u) /* 100 ms between bytes */
#define MAX_PROFILED_OPS 512

enum parse_state { HUNT0, HUNT1, HEADER, PAYLOAD, CRC, DISCARD };

typedef struct {
    enum parse_state state;
    uint8_t header[4];          /* type, seq, len lo, len hi */
    uint32_t have;              /* bytes of the current field received */
    uint32_t length;
    uint32_t discard_left;
    uint64_t last_byte_tick;
} parser_t;

/* The I/O buffers share one section so a board file can place them in an
 * extra memory region (holds = ["io_buffers"], e.g. the STM32's CCM). */
#define IO_BUFFER __attribute__((section(".bss.tm_io"), aligned(8)))

static uint8_t rx_payload[TM_MAX_PAYLOAD] IO_BUFFER;
static uint8_t rx_crc[4];
static uint8_t tx_payload[TM_MAX_PAYLOAD] IO_BUFFER;
static uint64_t op_ticks[MAX_PROFILED_OPS + 1] IO_BUFFER;
static uint16_t profiled_ops;

/* ---- sending ---------------------------------------------------------- */

static void put_u16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v) { put_u16(p, v); put_u16(p + 2, v >> 16); }
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void send_frame(uint8_t type, uint8_t seq, const uint8_t *payload, uint32_t length) {
    uint8_t head[6] = {TM_SYNC0, TM_SYNC1, type, seq, 0, 0};
    put_u16(head + 4, length);
    uint32_t crc = crc32_update(0, head + 2, 4);
    crc = crc32_update(crc, payload, length);
    uint8_t tail[4];
    put_u32(tail, crc);
    uart_write(head, sizeof head);
    uart_write(payload, length);
    uart_write(tail, sizeof tail);
}

static void send_error(uint8_t seq, uint8_t code, uint8_t request, const char *message) {
    uint8_t buf[2 + 96];
    size_t n = strlen(message);
    n = n > 96 ? 96 : n;
    buf[0] = code;
    buf[1] = request;
    memcpy(buf + 2, message, n);
    send_frame(TM_MSG_ERROR, seq, buf, (uint32_t)(2 + n));
}

void protocol_report_fault(uint32_t ipsr) {
    static const char digits[] = "0123456789";
    char message[] = "cpu fault, exception 00";
    message[sizeof message - 3] = digits[(ipsr / 10) % 10];
    message[sizeof message - 2] = digits[ipsr % 10];
    send_error(0, TM_ERR_FAULT, 0, message);
}

/* ---- model I/O layout --------------------------------------------------- */

static uint32_t io_bytes(const int16_t *indices, int count) {
    uint32_t total = 0;
    for (int i = 0; i < count; ++i) {
        total += tm_model.tensors[indices[i]].bytes;
    }
    return total;
}

/* Copies between a flat buffer and the (possibly non-contiguous) I/O tensors.
 * to_tensors: 1 writes `data` into the tensors at byte `offset`, 0 reads. */
static void copy_io(const int16_t *indices, int count, uint32_t offset, uint8_t *data, uint32_t n, int to_tensors) {
    for (int i = 0; i < count && n > 0; ++i) {
        const uint32_t size = tm_model.tensors[indices[i]].bytes;
        if (offset >= size) {
            offset -= size;
            continue;
        }
        uint8_t *tensor = (uint8_t *)tm_tensor_ptr(&tm_model, indices[i]);
        const uint32_t chunk = size - offset < n ? size - offset : n;
        if (to_tensors) {
            memcpy(tensor + offset, data, chunk);
        } else {
            memcpy(data, tensor + offset, chunk);
        }
        data += chunk;
        n -= chunk;
        offset = 0;
    }
}

/* ---- handlers ----------------------------------------------------------- */

static uint32_t put_string(uint8_t *p, const char *s) {
    const size_t n = strlen(s) > 255 ? 255 : strlen(s);
    p[0] = (uint8_t)n;
    memcpy(p + 1, s, n);
    return (uint32_t)(1 + n);
}

static uint32_t put_tensors(uint8_t *p, const int16_t *indices, int count) {
    uint32_t n = 0;
    p[n++] = (uint8_t)count;
    for (int i = 0; i < count; ++i) {
        const tm_tensor_t *t = &tm_model.tensors[indices[i]];
        p[n++] = t->dtype;
        p[n++] = t->rank;
        for (int d = 0; d < t->rank; ++d) {
            put_u32(p + n, (uint32_t)t->dims[d]);
            n += 4;
        }
        uint32_t scale_bits;
        memcpy(&scale_bits, &t->scale, 4);
        put_u32(p + n, scale_bits);
        put_u32(p + n + 4, (uint32_t)t->zero_point);
        put_u32(p + n + 8, t->bytes);
        n += 12;
    }
    return n;
}

static void handle_info(uint8_t seq) {
    uint8_t *p = tx_payload;
    uint32_t n = 0;
    put_u16(p + n, TM_PROTOCOL_VERSION);
    put_u16(p + n + 2, TM_MAX_PAYLOAD);
    n += 4;
    n += put_string(p + n, TM_FIRMWARE_VERSION);
    n += put_string(p + n, BOARD_NAME);
    n += put_string(p + n, BOARD_CPU);
    n += put_string(p + n, tm_model.name);
    memcpy(p + n, tm_model.sha256, 32);
    n += 32;
    put_u32(p + n, tm_model.arena_bytes);
    put_u32(p + n + 4, CPU_CLOCK_HZ);
    put_u16(p + n + 8, tm_model.n_ops);
    n += 10;
    n += put_tensors(p + n, tm_model.inputs, tm_model.n_inputs);
    n += put_tensors(p + n, tm_model.outputs, tm_model.n_outputs);
    send_frame(TM_MSG_INFO | TM_MSG_RESPONSE, seq, p, n);
}

void tm_op_boundary_hook(int op_index) {
    if (op_index <= MAX_PROFILED_OPS) {
        op_ticks[op_index] = ticks_now();
        profiled_ops = (uint16_t)op_index;
    }
}

static void handle_infer(uint8_t seq, const uint8_t *payload, uint32_t length) {
    const uint32_t in_bytes = io_bytes(tm_model.inputs, tm_model.n_inputs);
    if (length != 0 && length != in_bytes) {
        send_error(seq, TM_ERR_BAD_LENGTH, TM_MSG_INFER, "input length does not match the model inputs");
        return;
    }
    if (length) {
        copy_io(tm_model.inputs, tm_model.n_inputs, 0, (uint8_t *)payload, length, 1);
    }
    const uint64_t start = ticks_now();
    const tm_status_t status = tm_invoke(&tm_model);
    const uint64_t elapsed = ticks_now() - start;
    if (status != TM_OK) {
        char message[] = "kernel failed at op 000";
        const int op = tm_failed_op();
        message[sizeof message - 4] = (char)('0' + (op / 100) % 10);
        message[sizeof message - 3] = (char)('0' + (op / 10) % 10);
        message[sizeof message - 2] = (char)('0' + op % 10);
        send_error(seq, TM_ERR_INFER_FAILED, TM_MSG_INFER, message);
        return;
    }
    put_u32(tx_payload, (uint32_t)elapsed);
    put_u32(tx_payload + 4, (uint32_t)(elapsed >> 32));
    const uint32_t out_bytes = io_bytes(tm_model.outputs, tm_model.n_outputs);
    uint32_t n = 8;
    if (out_bytes <= TM_MAX_PAYLOAD - 8) { /* else the host uses READ_OUTPUT */
        copy_io(tm_model.outputs, tm_model.n_outputs, 0, tx_payload + 8, out_bytes, 0);
        n += out_bytes;
    }
    send_frame(TM_MSG_INFER | TM_MSG_RESPONSE, seq, tx_payload, n);
}

static void handle_write_input(uint8_t seq, const uint8_t *payload, uint32_t length) {
    if (length < 4) {
        send_error(seq, TM_ERR_BAD_LENGTH, TM_MSG_WRITE_INPUT, "needs a u32 offset");
        return;
    }
    const uint32_t offset = get_u32(payload);
    const uint32_t n = length - 4;
    if (offset > io_bytes(tm_model.inputs, tm_model.n_inputs) ||
        n > io_bytes(tm_model.inputs, tm_model.n_inputs) - offset) {
        send_error(seq, TM_ERR_BAD_OFFSET, TM_MSG_WRITE_INPUT, "write beyond the model inputs");
        return;
    }
    copy_io(tm_model.inputs, tm_model.n_inputs, offset, (uint8_t *)payload + 4, n, 1);
    send_frame(TM_MSG_WRITE_INPUT | TM_MSG_RESPONSE, seq, 0, 0);
}

static void handle_read_output(uint8_t seq, const uint8_t *payload, uint32_t length) {
    if (length != 6) {
        send_error(seq, TM_ERR_BAD_LENGTH, TM_MSG_READ_OUTPUT, "needs u32 offset, u16 length");
        return;
    }
    const uint32_t offset = get_u32(payload);
    const uint32_t n = (uint32_t)payload[4] | ((uint32_t)payload[5] << 8);
    const uint32_t total = io_bytes(tm_model.outputs, tm_model.n_outputs);
    if (n > TM_MAX_PAYLOAD || offset > total || n > total - offset) {
        send_error(seq, TM_ERR_BAD_OFFSET, TM_MSG_READ_OUTPUT, "read beyond the model outputs");
        return;
    }
    copy_io(tm_model.outputs, tm_model.n_outputs, offset, tx_payload, n, 0);
    send_frame(TM_MSG_READ_OUTPUT | TM_MSG_RESPONSE, seq, tx_payload, n);
}

static void handle_profile(uint8_t seq) {
    /* u16 op count, then u32 ticks per op of the last inference. */
    const uint32_t ops = profiled_ops;
    if (2 + 4 * ops > TM_MAX_PAYLOAD) {
        send_error(seq, TM_ERR_BAD_LENGTH, TM_MSG_PROFILE, "too many ops to report");
        return;
    }
    put_u16(tx_payload, ops);
    for (uint32_t i = 0; i < ops; ++i) {
        put_u32(tx_payload + 2 + 4 * i, (uint32_t)(op_ticks[i + 1] - op_ticks[i]));
    }
    send_frame(TM_MSG_PROFILE | TM_MSG_RESPONSE, seq, tx_payload, 2 + 4 * ops);
}

static void dispatch(uint8_t type, uint8_t seq, const uint8_t *payload, uint32_t length) {
    switch (type) {
    case TM_MSG_INFO: handle_info(seq); break;
    case TM_MSG_INFER: handle_infer(seq, payload, length); break;
    case TM_MSG_WRITE_INPUT: handle_write_input(seq, payload, length); break;
    case TM_MSG_READ_OUTPUT: handle_read_output(seq, payload, length); break;
    case TM_MSG_ECHO: send_frame(TM_MSG_ECHO | TM_MSG_RESPONSE, seq, payload, length); break;
    case TM_MSG_PROFILE: handle_profile(seq); break;
    default: send_error(seq, TM_ERR_UNKNOWN_TYPE, type, "unknown request type"); break;
    }
}

/* ---- parsing ------------------------------------------------------------ */

static void frame_complete(parser_t *p) {
    const uint8_t type = p->header[0], seq = p->header[1];
    uint32_t crc = crc32_update(0, p->header, 4);
    crc = crc32_update(crc, rx_payload, p->length);
    if (crc != get_u32(rx_crc)) {
        send_error(seq, TM_ERR_BAD_CRC, type, "frame CRC mismatch");
        return;
    }
    dispatch(type, seq, rx_payload, p->length);
}

static void parse_byte(parser_t *p, uint8_t byte) {
    switch (p->state) {
    case HUNT0:
        p->state = byte == TM_SYNC0 ? HUNT1 : HUNT0;
        break;
    case HUNT1:
        p->state = byte == TM_SYNC1 ? HEADER : (byte == TM_SYNC0 ? HUNT1 : HUNT0);
        p->have = 0;
        break;
    case HEADER:
        p->header[p->have++] = byte;
        if (p->have == 4) {
            p->length = (uint32_t)p->header[2] | ((uint32_t)p->header[3] << 8);
            p->have = 0;
            if (p->length > TM_MAX_PAYLOAD) {
                send_error(p->header[1], TM_ERR_TOO_LONG, p->header[0], "payload longer than the maximum");
                p->discard_left = p->length + 4;
                p->state = DISCARD;
            } else {
                p->state = p->length ? PAYLOAD : CRC;
            }
        }
        break;
    case PAYLOAD:
        rx_payload[p->have++] = byte;
        if (p->have == p->length) {
            p->have = 0;
            p->state = CRC;
        }
        break;
    case CRC:
        rx_crc[p->have++] = byte;
        if (p->have == 4) {
            p->state = HUNT0;
            frame_complete(p);
        }
        break;
    case DISCARD:
        if (--p->discard_left == 0) {
            p->state = HUNT0;
        }
        break;
    }
}

static void check_timeout(parser_t *p) {
    if (p->state == HUNT0 || ticks_now() - p->last_byte_tick < FRAME_TIMEOUT_TICKS) {
        return;
    }
    if (p->state != DISCARD && p->state != HUNT1) {
        send_error(p->state == HEADER ? 0 : p->header[1], TM_ERR_TRUNCATED, p->state == HEADER ? 0 : p->header[0],
                   "frame truncated: the line went idle mid-frame");
    }
    p->state = HUNT0;
}

void protocol_run(void) {
    parser_t parser = {.state = HUNT0};
    for (;;) {
        uint8_t byte;
        if (uart_try_read(&byte)) {
            parser.last_byte_tick = ticks_now();
            parse_byte(&parser, byte);
        } else {
            check_timeout(&parser);
        }
    }
}
