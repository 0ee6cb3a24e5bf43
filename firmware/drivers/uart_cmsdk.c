/* uart_cmsdk.c - Arm CMSDK APB UART (MPS2/MPS3 boards).  The base address,
 * UART clock and baud rate come from the board file as -D defines.  QEMU
 * only transmits with CTRL.TXEN set.
 *
 * Receive: the RX interrupt moves bytes into a ring (board.h).  The IRQ
 * number follows from the UART's address on the QEMU/FPGA machines
 * (hw/arm/mps2.c: AN385/AN386/AN500 UART0..4 RX = 0, 2, 4, 18, 20;
 * hw/arm/mps2-tz.c: AN547 UART0..3 RX = 33, 35, 37, 39, TX = RX + 1) or from
 * -DUART_RX_IRQ=n; -DUART_RX_IRQ=-1 (or an unknown address) polls. */
#include <stdint.h>

#include "uart_config.h"

#ifndef UART_RX_IRQ
#if UART_BASE == 0x40004000u
#define UART_RX_IRQ 0
#elif UART_BASE == 0x40005000u
#define UART_RX_IRQ 2
#elif UART_BASE == 0x40006000u
#define UART_RX_IRQ 4
#elif UART_BASE == 0x40007000u
#define UART_RX_IRQ 18
#elif UART_BASE == 0x40009000u
#define UART_RX_IRQ 20
#elif UART_BASE == 0x49303000u || UART_BASE == 0x59303000u
#define UART_RX_IRQ 33
#elif UART_BASE == 0x49304000u || UART_BASE == 0x59304000u
#define UART_RX_IRQ 35
#elif UART_BASE == 0x49305000u || UART_BASE == 0x59305000u
#define UART_RX_IRQ 37
#elif UART_BASE == 0x49306000u || UART_BASE == 0x59306000u
#define UART_RX_IRQ 39
#else
#define UART_RX_IRQ (-1)
#endif
#endif

#define UART_DATA (*(volatile uint32_t *)(UART_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(UART_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(UART_BASE + 0x08u))
#define UART_INTCLEAR (*(volatile uint32_t *)(UART_BASE + 0x0Cu))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART_BASE + 0x10u))
#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u
#define CTRL_RX_INT_EN 0x8u
#define INT_RX 0x2u


/* The shared receive path (uart_rx_ring.h), on this peripheral's registers. */
#define RX_READY() (UART_STATE & STATE_RX_FULL)
#define RX_TAKE() (uint8_t)UART_DATA
#define RX_ACK() (UART_INTCLEAR = INT_RX)
#define RX_PAUSE() ((void)0)
#define RX_RESUME() ((void)0)
#include "uart_rx_ring.h"

void board_init(void) {
    UART_BAUDDIV = UART_CLOCK_HZ / UART_BAUD;
#if UART_RX_IRQ >= 0
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN;
    uart_rx_hold(0);
#else
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN;
#endif
}

void uart_write(const uint8_t *data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        while (UART_STATE & STATE_TX_FULL) {
        }
        UART_DATA = data[i];
    }
}
