/* uart_stm32.c - the USART of STM32F2/F4 parts (SR/DR/BRR/CR1), polled.
 *
 * Receive: the RXNE interrupt moves bytes into a ring (board.h).  IRQ numbers
 * of the STM32F4 vector table (as wired in QEMU's stm32f405_soc.c): USART1 37,
 * USART2 38, USART3 39, UART4 52, UART5 53, USART6 71; -DUART_RX_IRQ=n
 * overrides, -1 polls.
 *
 * Written for real hardware and emulated by QEMU's stm32f2xx_usart: the
 * board file gives the instance (UART_BASE), its bus clock (UART_CLOCK_HZ),
 * the RCC enable bit of the USART and, optionally, the GPIO port, pins and
 * alternate function of TX/RX.  On QEMU the RCC and GPIO blocks are
 * unimplemented devices (writes ignored), so the same code runs on both.
 *
 * Board defines (all integers; *_OFFSET are byte offsets in the block):
 *   UART_BASE                 USART registers (USART1 0x40011000, USART2 0x40004400, ...)
 *   UART_CLOCK_HZ             its kernel clock: PCLK2 for USART1/6, PCLK1 for the others
 *   UART_RCC_ENR_OFFSET       RCC enable register of the USART (APB2ENR 0x44, APB1ENR 0x40)
 *   UART_RCC_ENR_BIT          its bit there (USART1EN 4, USART6EN 5, USART2EN 17, ...)
 *   UART_GPIO_PORT            optional: GPIO port index 0=A, 1=B, ... of the TX/RX pins
 *   UART_TX_PIN, UART_RX_PIN  pin numbers in that port (USART1 on PA9/PA10)
 *   UART_GPIO_AF              alternate function number (7 for USART1..3, 8 for 4..6)
 */
#include <stdint.h>

#include "uart_config.h"

#ifndef UART_RX_IRQ
#if UART_BASE == 0x40011000u
#define UART_RX_IRQ 37
#elif UART_BASE == 0x40004400u
#define UART_RX_IRQ 38
#elif UART_BASE == 0x40004800u
#define UART_RX_IRQ 39
#elif UART_BASE == 0x40004C00u
#define UART_RX_IRQ 52
#elif UART_BASE == 0x40005000u
#define UART_RX_IRQ 53
#elif UART_BASE == 0x40011400u
#define UART_RX_IRQ 71
#else
#define UART_RX_IRQ (-1)
#endif
#endif

#define REG(base, offset) (*(volatile uint32_t *)((base) + (offset)))

#define USART_SR REG(UART_BASE, 0x00u)
#define USART_DR REG(UART_BASE, 0x04u)
#define USART_BRR REG(UART_BASE, 0x08u)
#define USART_CR1 REG(UART_BASE, 0x0Cu)
#define USART_CR2 REG(UART_BASE, 0x10u)
#define USART_CR3 REG(UART_BASE, 0x14u)
#define SR_RXNE (1u << 5)
#define SR_TXE (1u << 7)
#define CR1_RXNEIE (1u << 5)
#define CR1_RE (1u << 2)
#define CR1_TE (1u << 3)
#define CR1_UE (1u << 13)


#define RCC_BASE 0x40023800u
#define RCC_AHB1ENR REG(RCC_BASE, 0x30u)
#define GPIO_BASE(port) (0x40020000u + 0x400u * (uint32_t)(port))
#define GPIO_MODER(port) REG(GPIO_BASE(port), 0x00u)
#define GPIO_OSPEEDR(port) REG(GPIO_BASE(port), 0x08u)
#define GPIO_PUPDR(port) REG(GPIO_BASE(port), 0x0Cu)
#define GPIO_AFR(port, pin) REG(GPIO_BASE(port), 0x20u + 4u * ((uint32_t)(pin) / 8u))

#ifdef UART_GPIO_PORT
static void pin_alternate(uint32_t pin, uint32_t pull_up) {
    const uint32_t shift2 = 2u * pin, shift4 = 4u * (pin % 8u);
    GPIO_AFR(UART_GPIO_PORT, pin) = (GPIO_AFR(UART_GPIO_PORT, pin) & ~(0xFu << shift4)) | ((uint32_t)UART_GPIO_AF << shift4);
    GPIO_OSPEEDR(UART_GPIO_PORT) |= 0x2u << shift2;                                   /* fast */
    GPIO_PUPDR(UART_GPIO_PORT) = (GPIO_PUPDR(UART_GPIO_PORT) & ~(0x3u << shift2)) | (pull_up << shift2);
    GPIO_MODER(UART_GPIO_PORT) = (GPIO_MODER(UART_GPIO_PORT) & ~(0x3u << shift2)) | (0x2u << shift2); /* AF */
}
#endif

void board_init(void) {
#ifdef UART_RCC_ENR_OFFSET
    REG(RCC_BASE, UART_RCC_ENR_OFFSET) |= 1u << UART_RCC_ENR_BIT;
    (void)REG(RCC_BASE, UART_RCC_ENR_OFFSET); /* read back: the clock is on before the first access */
#endif
#ifdef UART_GPIO_PORT
    RCC_AHB1ENR |= 1u << UART_GPIO_PORT;
    (void)RCC_AHB1ENR;
    pin_alternate(UART_TX_PIN, 0u);
    pin_alternate(UART_RX_PIN, 1u); /* pull-up keeps an idle, unconnected RX line high */
#endif
    USART_CR1 = 0;
    USART_CR2 = 0;                                            /* 1 stop bit */
    USART_CR3 = 0;                                            /* no flow control */
    USART_BRR = (UART_CLOCK_HZ + UART_BAUD / 2u) / UART_BAUD; /* 16x oversampling: mantissa.fraction */
#if UART_RX_IRQ >= 0
    USART_CR1 = CR1_UE | CR1_TE | CR1_RE | CR1_RXNEIE; /* 8N1 */
    uart_rx_hold(0);
#else
    USART_CR1 = CR1_UE | CR1_TE | CR1_RE; /* 8N1 */
#endif
}

void uart_write(const uint8_t *data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        while (!(USART_SR & SR_TXE)) {
        }
        USART_DR = data[i];
    }
}

/* Reading SR then DR also clears an overrun (ORE), so a lost byte cannot wedge the receiver;
 * the protocol's CRC and timeout deal with the lost byte itself. */
/* The shared receive path (uart_rx_ring.h), on this peripheral's registers. */
#define RX_READY() (USART_SR & SR_RXNE)
#define RX_TAKE() (uint8_t)USART_DR
#define RX_ACK() ((void)0)
#define RX_PAUSE() (USART_CR1 &= ~CR1_RXNEIE)
#define RX_RESUME() (USART_CR1 |= CR1_RXNEIE)
#include "uart_rx_ring.h"
