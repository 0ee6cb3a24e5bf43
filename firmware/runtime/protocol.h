/* protocol.h - the framed binary protocol spoken on the UART (docs/protocol.md).
 *
 * Frame: A5 5A | type u8 | seq u8 | length u16 LE | payload | CRC-32 LE over
 * type..payload.  Every request gets exactly one response frame (type | 0x80,
 * same seq) or an error frame (0x7F).  Version 2: INFO carries the host's
 * version (and pipelining window); a request seen again (same type, seq and
 * CRC) gets its recorded response instead of running twice; with a window
 * > 1 requests run strictly in seq order (SEQ_GAP otherwise). */
#ifndef TM_PROTOCOL_H
#define TM_PROTOCOL_H

#include <stdint.h>

#define TM_PROTOCOL_VERSION 2
#define TM_MAX_PAYLOAD 4096
#define TM_SYNC0 0xA5
#define TM_SYNC1 0x5A
#define TM_FIRMWARE_VERSION "0.2.0"
#define TM_HISTORY 4         /* requests whose responses are remembered (max pipelining window) */
#define TM_REPLAY_BYTES 100  /* responses up to this size are kept for every remembered request */

enum {
    TM_MSG_INFO = 0x01,
    TM_MSG_INFER = 0x02,
    TM_MSG_WRITE_INPUT = 0x03,
    TM_MSG_READ_OUTPUT = 0x04,
    TM_MSG_ECHO = 0x05,
    TM_MSG_PROFILE = 0x06,
    TM_MSG_ERROR = 0x7F,
    TM_MSG_RESPONSE = 0x80,
};

enum {
    TM_ERR_BAD_CRC = 1,
    TM_ERR_TOO_LONG = 2,
    TM_ERR_TRUNCATED = 3,
    TM_ERR_UNKNOWN_TYPE = 4,
    TM_ERR_BAD_LENGTH = 5,
    TM_ERR_BAD_OFFSET = 6,
    TM_ERR_INFER_FAILED = 7,
    TM_ERR_FAULT = 8,
    TM_ERR_SEQ_GAP = 9,      /* a request ahead of the next expected seq: not run, send again in order */
    TM_ERR_REPLAY_LOST = 10, /* a request already run whose response is no longer kept (or its seq is spent) */
    TM_ERR_BAD_SEQ = 11,     /* seq 0 in a request: reserved for the device, not run */
};

/* Runs the protocol forever. */
void protocol_run(void);

#endif /* TM_PROTOCOL_H */
