/* protocol.c - frame parser (a byte-driven state machine with an inter-byte
 * timeout, so a truncated frame never hangs the device), the request history
 * that makes every request idempotent (a retransmitted request gets its
 * recorded response, it is not run again), in-order execution for a
 * pipelining host, and the handlers.  docs/protocol.md is the specification. */
#include "protocol.h"

#include <string.h>

#include "board.h"
#include "crc32.h"
#include "preprocess.h"
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
#define TIMEOUT_POLL_EVERY 64u /* empty polls of the receive ring between two timer reads */
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

/* ---- request history (replay of retransmitted requests) ------------------ */

typedef struct {
    uint8_t valid, type, seq, resp_type;
    uint32_t crc;        /* CRC-32 of the request frame: with type and seq, its identity */
    uint16_t length;     /* response payload bytes */
    uint8_t kept;        /* payload in data[] (else only while it is still in tx_payload) */
    uint8_t data[TM_REPLAY_BYTES];
} history_t;

static history_t history[TM_HISTORY] IO_BUFFER;
static uint32_t history_next;
static int tx_owner = -1;          /* history entry whose response payload is in tx_payload */
static uint8_t window = 1;         /* the host's pipelining window (INFO request) */
static uint8_t expected_seq;       /* next seq in order, every window; 0 until a request ran since boot */
static struct {
    uint8_t type, seq;
    uint32_t crc;
} current;                         /* the request being run */

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

/* Handlers build payloads they send from tx_payload through this (it ends the replay from tx_payload). */
static uint8_t *tx_begin(void) {
    tx_owner = -1;
    return tx_payload;
}

/* Every outcome of running a request (response or error) is recorded, then sent. */
static void respond(uint8_t type, const uint8_t *payload, uint32_t length) {
    const uint32_t index = history_next;
    history_t *h = &history[index];
    if (tx_owner == (int)index) {
        tx_owner = -1;
    }
    h->valid = 1;
    h->type = current.type;
    h->seq = current.seq;
    h->crc = current.crc;
    h->resp_type = type;
    h->length = (uint16_t)length;
    h->kept = length <= TM_REPLAY_BYTES;
    if (h->kept && length) {
        memcpy(h->data, payload, length);
    }
    if (payload == tx_payload) {
        tx_owner = (int)index;
    }
    history_next = (history_next + 1u) % TM_HISTORY;
    send_frame(type, current.seq, payload, length);
}

static void respond_error(uint8_t code, const char *message) {
    uint8_t buf[2 + 96];
    size_t n = strlen(message);
    n = n > 96 ? 96 : n;
    buf[0] = code;
    buf[1] = current.type;
    memcpy(buf + 2, message, n);
    respond(TM_MSG_ERROR, buf, (uint32_t)(2 + n));
}

static const history_t *history_find(uint8_t type, uint8_t seq, uint32_t crc) {
    for (uint32_t i = 0; i < TM_HISTORY; ++i) {
        const history_t *h = &history[i];
        if (h->valid && h->type == type && h->seq == seq && h->crc == crc) {
            return h;
        }
    }
    return 0;
}

static int history_seq_used(uint8_t seq) {
    for (uint32_t i = 0; i < TM_HISTORY; ++i) {
        if (history[i].valid && history[i].seq == seq) {
            return 1;
        }
    }
    return 0;
}

static void history_clear(void) {
    memset(history, 0, sizeof history);
    history_next = 0;
    tx_owner = -1;
}

static void replay(const history_t *h) {
    if (h->kept) {
        send_frame(h->resp_type, h->seq, h->data, h->length);
    } else if (tx_owner == (int)(h - history)) {
        send_frame(h->resp_type, h->seq, tx_payload, h->length);
    } else {
        send_error(h->seq, TM_ERR_REPLAY_LOST, h->type, "request already run; its response is no longer kept");
    }
}

/* Seqs run 1..255 (0 is the device's own): how far `seq` is ahead of `from`, 0..254. */
static uint32_t seq_ahead(uint8_t from, uint8_t seq) {
    return ((uint32_t)seq + 255u - (uint32_t)from) % 255u;
}

static uint8_t seq_next(uint8_t seq) { return (uint8_t)(seq % 255u + 1u); }

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

/* INFO. A payload (u16 host protocol version, optional u8 window) starts a
 * session: the history is cleared and, when the versions agree, the host's
 * pipelining window (1..TM_HISTORY) is taken. The response always carries the
 * device's own version first; the host decides about a mismatch. */
static void handle_info(const uint8_t *payload, uint32_t length) {
    if (length != 0 && length != 2 && length != 3) {
        send_error(current.seq, TM_ERR_BAD_LENGTH, TM_MSG_INFO, "INFO takes 0, 2 or 3 payload bytes");
        return;
    }
    if (length >= 2) {
        const uint32_t host_version = (uint32_t)payload[0] | ((uint32_t)payload[1] << 8);
        uint32_t w = length >= 3 ? payload[2] : 1u;
        w = w < 1u ? 1u : (w > TM_HISTORY ? TM_HISTORY : w);
        history_clear();
        window = host_version == TM_PROTOCOL_VERSION ? (uint8_t)w : 1u;
    }
    expected_seq = seq_next(current.seq);
    uint8_t *p = tx_begin();
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
    put_u16(p + n, (uint16_t)uart_rx_buffer_bytes());
    p[n + 2] = TM_HISTORY;
    put_u16(p + n + 3, TM_REPLAY_BYTES);
    p[n + 5] = window;
    n += 6;
    if (preprocess_kind() != TM_PRE_NONE) { /* the pre-processing stage (preprocess.h) */
        p[n] = preprocess_kind();
        p[n + 1] = preprocess_param();
        n += 2;
    }
    send_frame(TM_MSG_INFO | TM_MSG_RESPONSE, current.seq, p, n); /* INFO is run again, never replayed */
}

void tm_op_boundary_hook(int op_index) {
    if (op_index <= MAX_PROFILED_OPS) {
        op_ticks[op_index] = ticks_now();
        profiled_ops = (uint16_t)op_index;
    }
}

static void handle_infer(const uint8_t *payload, uint32_t length) {
    const uint32_t in_bytes = io_bytes(tm_model.inputs, tm_model.n_inputs);
    if (length != 0 && length != in_bytes) {
        respond_error(TM_ERR_BAD_LENGTH, "input length does not match the model inputs");
        return;
    }
    if (length) {
        copy_io(tm_model.inputs, tm_model.n_inputs, 0, (uint8_t *)payload, length, 1);
    }
    /* No interrupt handler inside the measured interval: bytes arriving now wait (board.h). */
    uart_rx_hold(1);
    /* The pre-processing stage, if built in, is timed on its own: ticks stay the inference's. */
    const uint64_t pre_start = ticks_now();
    const int pre_failed = preprocess_input(&tm_model);
    const uint64_t pre_ticks = ticks_now() - pre_start;
    if (pre_failed) {
        uart_rx_hold(0);
        respond_error(TM_ERR_INFER_FAILED, "pre-processing stage does not suit the model input");
        return;
    }
    const uint64_t start = ticks_now();
    const tm_status_t status = tm_invoke(&tm_model);
    const uint64_t elapsed = ticks_now() - start;
    uart_rx_hold(0);
    if (status != TM_OK) {
        char message[] = "kernel failed at op 000";
        const int op = tm_failed_op();
        message[sizeof message - 4] = (char)('0' + (op / 100) % 10);
        message[sizeof message - 3] = (char)('0' + (op / 10) % 10);
        message[sizeof message - 2] = (char)('0' + op % 10);
        respond_error(TM_ERR_INFER_FAILED, message);
        return;
    }
    uint8_t *tx = tx_begin();
    put_u32(tx, (uint32_t)elapsed);
    put_u32(tx + 4, (uint32_t)(elapsed >> 32));
    const uint32_t out_bytes = io_bytes(tm_model.outputs, tm_model.n_outputs);
    const uint32_t trailer = preprocess_kind() != TM_PRE_NONE ? 4u : 0u;
    uint32_t n = 8;
    if (out_bytes <= TM_MAX_PAYLOAD - 8 - trailer) { /* else the host uses READ_OUTPUT */
        copy_io(tm_model.outputs, tm_model.n_outputs, 0, tx + 8, out_bytes, 0);
        n += out_bytes;
    }
    if (preprocess_kind() != TM_PRE_NONE) { /* u32 pre-processing ticks last */
        put_u32(tx + n, (uint32_t)pre_ticks);
        n += 4;
    }
    respond(TM_MSG_INFER | TM_MSG_RESPONSE, tx, n);
}

static void handle_write_input(const uint8_t *payload, uint32_t length) {
    if (length < 4) {
        respond_error(TM_ERR_BAD_LENGTH, "needs a u32 offset");
        return;
    }
    const uint32_t offset = get_u32(payload);
    const uint32_t n = length - 4;
    if (offset > io_bytes(tm_model.inputs, tm_model.n_inputs) ||
        n > io_bytes(tm_model.inputs, tm_model.n_inputs) - offset) {
        respond_error(TM_ERR_BAD_OFFSET, "write beyond the model inputs");
        return;
    }
    copy_io(tm_model.inputs, tm_model.n_inputs, offset, (uint8_t *)payload + 4, n, 1);
    respond(TM_MSG_WRITE_INPUT | TM_MSG_RESPONSE, 0, 0);
}

static void handle_read_output(const uint8_t *payload, uint32_t length) {
    if (length != 6) {
        respond_error(TM_ERR_BAD_LENGTH, "needs u32 offset, u16 length");
        return;
    }
    const uint32_t offset = get_u32(payload);
    const uint32_t n = (uint32_t)payload[4] | ((uint32_t)payload[5] << 8);
    const uint32_t total = io_bytes(tm_model.outputs, tm_model.n_outputs);
    if (n > TM_MAX_PAYLOAD || offset > total || n > total - offset) {
        respond_error(TM_ERR_BAD_OFFSET, "read beyond the model outputs");
        return;
    }
    uint8_t *tx = tx_begin();
    copy_io(tm_model.outputs, tm_model.n_outputs, offset, tx, n, 0);
    respond(TM_MSG_READ_OUTPUT | TM_MSG_RESPONSE, tx, n);
}

static void handle_echo(const uint8_t *payload, uint32_t length) {
    uint8_t *tx = tx_begin();
    memcpy(tx, payload, length);
    respond(TM_MSG_ECHO | TM_MSG_RESPONSE, tx, length);
}

static void handle_profile(uint32_t length) {
    /* u16 op count, then u32 ticks per op of the last inference. */
    const uint32_t ops = profiled_ops;
    if (length != 0) {
        respond_error(TM_ERR_BAD_LENGTH, "PROFILE takes no payload");
        return;
    }
    if (2 + 4 * ops > TM_MAX_PAYLOAD) {
        respond_error(TM_ERR_BAD_LENGTH, "too many ops to report");
        return;
    }
    uint8_t *tx = tx_begin();
    put_u16(tx, ops);
    for (uint32_t i = 0; i < ops; ++i) {
        put_u32(tx + 2 + 4 * i, (uint32_t)(op_ticks[i + 1] - op_ticks[i]));
    }
    respond(TM_MSG_PROFILE | TM_MSG_RESPONSE, tx, 2 + 4 * ops);
}

static void dispatch(const uint8_t *payload, uint32_t length) {
    switch (current.type) {
    case TM_MSG_INFO: handle_info(payload, length); break;
    case TM_MSG_INFER: handle_infer(payload, length); break;
    case TM_MSG_WRITE_INPUT: handle_write_input(payload, length); break;
    case TM_MSG_READ_OUTPUT: handle_read_output(payload, length); break;
    case TM_MSG_ECHO: handle_echo(payload, length); break;
    case TM_MSG_PROFILE: handle_profile(length); break;
    default: respond_error(TM_ERR_UNKNOWN_TYPE, "unknown request type"); break;
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
    current.type = type;
    current.seq = seq;
    current.crc = crc;
    if (seq == 0) { /* reserved for the device's own frames: a host never sends it */
        send_error(0, TM_ERR_BAD_SEQ, type, "seq 0 is reserved for the device");
        return;
    }
    if (type == TM_MSG_INFO) {
        /* INFO is run whenever it arrives, never replayed nor refused for its seq: with a
         * payload it starts a session (history cleared, window taken), so a host that
         * restarted handshakes with a device that kept running, whatever it sends. */
        handle_info(rx_payload, p->length);
        return;
    }
    const history_t *seen = history_find(type, seq, crc);
    if (seen) { /* a retransmission or a duplicate: the recorded response, not a second run */
        replay(seen);
        return;
    }
    /* Order, at every window: seq arithmetic on the ring 1..255 (seq_ahead). A seq 1..127
     * behind the next expected one that is not in the history is a stale copy or a reuse of
     * a seq already spent: running it could run a request twice, so it is refused. With
     * window > 1, a seq 1..window-1 ahead means the ones before it were lost on the way: it
     * is refused too (the host sends them again, in order). Anything else (the expected seq,
     * or farther ahead: a new start) runs. Before any request ran since boot, any seq runs. */
    if (expected_seq != 0) {
        const uint32_t ahead = seq_ahead(expected_seq, seq);
        if (ahead >= 128u) {
            send_error(seq, TM_ERR_REPLAY_LOST, type,
                       history_seq_used(seq) ? "seq already used by another request; not run"
                                             : "request already run; its response is no longer kept");
            return;
        }
        if (ahead >= 1u && ahead < window) {
            char message[] = "out of order: expected seq 000";
            message[sizeof message - 4] = (char)('0' + expected_seq / 100);
            message[sizeof message - 3] = (char)('0' + (expected_seq / 10) % 10);
            message[sizeof message - 2] = (char)('0' + expected_seq % 10);
            send_error(seq, TM_ERR_SEQ_GAP, type, message);
            return;
        }
    }
    expected_seq = seq_next(seq);
    dispatch(rx_payload, p->length);
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
    uint32_t empty_polls = 0;
    for (;;) {
        uint8_t byte;
        if (uart_try_read(&byte)) {
            empty_polls = 0;
            parser.last_byte_tick = ticks_now();
            parse_byte(&parser, byte);
        } else if (parser.state == HUNT0) {
            uart_wait_rx(); /* idle between frames: sleep until the RX interrupt */
        } else {
            /* Inside a frame, sleep too: the next byte's interrupt or the 50 ms SysTick wrap wakes
             * us.  Spinning here instead kept QEMU's vCPU thread busy on the core its UART thread
             * needs for every byte (docs/protocol.md).  A second empty poll in a row means a wake
             * without a byte: time to check the 100 ms idle timeout (on a board without a receive
             * interrupt uart_wait_rx returns at once, so check every TIMEOUT_POLL_EVERY polls). */
            if (++empty_polls % TIMEOUT_POLL_EVERY == 0u || (empty_polls > 1u && uart_rx_interrupts())) {
                check_timeout(&parser);
            }
            uart_wait_rx();
        }
    }
}
