/* uart_cmsdk.c - Arm CMSDK APB UART (MPS2/MPS3 boards).  The base address,
 * UART clock and baud rate come from the board file as -D defines.  QEMU
 * only transmits with CTRL.TXEN set. */
#include <stdint.h>

#include "board.h"

#ifndef UART_BASE
#error "UART_BASE must be defined by the board file"
#endif
#ifndef UART_CLOCK_HZ
#define UART_CLOCK_HZ CPU_CLOCK_HZ
#endif
#ifndef UART_BAUD
#define UART_BAUD 115200u
#endif

#define UART_DATA (*(volatile uint32_t *)(UART_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(UART_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(UART_BASE + 0x08u))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART_BASE + 0x10u))
#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u

void board_init(void) {
    UART_BAUDDIV = UART_CLOCK_HZ / UART_BAUD;
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN;
}

void uart_write(const uint8_t *data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        while (UART_STATE & STATE_TX_FULL) {
        }
        UART_DATA = data[i];
    }
}

int uart_try_read(uint8_t *byte) {
    if (!(UART_STATE & STATE_RX_FULL)) {
        return 0;
    }
    *byte = (uint8_t)UART_DATA;
    return 1;
}
