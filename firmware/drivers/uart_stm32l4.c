/* uart_stm32l4.c - the USART/LPUART of STM32L4/L4+ (and G4, L5, WB: the "v2" layout with
 * ISR/ICR/RDR/TDR), polled transmit, RXNE interrupt into a ring (board.h).
 *
 * Differences from uart_stm32.c (F2/F4 "v1" layout SR/DR/BRR/CR1):
 *   CR1 0x00 (UE is bit 0), CR2 0x04, CR3 0x08, BRR 0x0C, ISR 0x1C, ICR 0x20, RDR 0x24, TDR 0x28;
 *   an overrun is not cleared by reading RDR (ICR.ORECF): CR3.OVRDIS turns overrun detection off,
 *   so a lost byte can neither wedge the receiver nor keep the interrupt pending (the protocol's
 *   CRC and timeout deal with the lost byte itself);
 *   USART BRR = f / baud (16x oversampling), LPUART BRR = 256 * f / baud (UART_LPUART = 1).
 *
 * Silicon bring-up done here, as the board file asks (all optional):
 *   L4_SYSCLK_HSI16 = 1       switch SYSCLK from the 4 MHz MSI of reset to the 16 MHz HSI16
 *                             (0 flash wait states are enough up to 16 MHz in range 1)
 *   UART_RCC_ENR_OFFSET/BIT   the UART's clock enable in RCC (0x40021000): APB1ENR1 0x58 (USART2 17,
 *                             USART3 18, UART4 19, UART5 20), APB1ENR2 0x5C (LPUART1 0), APB2ENR 0x60
 *                             (USART1 14)
 *   UART_CCIPR_SHIFT/SEL      the kernel clock mux in RCC_CCIPR 0x88 (LPUART1SEL at 10: 0 PCLK1,
 *                             1 SYSCLK, 2 HSI16, 3 LSE; USART1SEL at 0, USART2SEL at 2, ...)
 *   UART_GPIO_VDDIO2 = 1      enable VddIO2 (PWR_CR2.IOSV), without which port G (PG2..PG15) is
 *                             unpowered on the L4R5/L4S5 (the NUCLEO-L4R5ZI's LPUART1 is on PG7/PG8)
 *   UART_GPIO_PORT            GPIO port index 0=A ... 6=G (AHB2, 0x48000000 + 0x400 * port; AHB2ENR 0x4C)
 *   UART_TX_PIN, UART_RX_PIN, UART_GPIO_AF   pins and alternate function (LPUART1 PG7/PG8 AF8)
 *   UART_CLOCK_HZ             the kernel clock the BRR is computed from
 *
 * IRQ numbers (STM32L4R5 vector table): USART1 37, USART2 38, USART3 39, UART4 52, UART5 53,
 * LPUART1 70; -DUART_RX_IRQ=n overrides, -1 polls.
 *
 * Not run here: there is no L4 machine in QEMU 7.2. Checked against RM0432 (STM32L4+ reference
 * manual) register maps; see docs/boards.md, "Real boards". */
#include <stdint.h>

#include "uart_config.h"
#ifndef UART_LPUART
#define UART_LPUART 0
#endif

#ifndef UART_RX_IRQ
#if UART_BASE == 0x40013800u
#define UART_RX_IRQ 37
#elif UART_BASE == 0x40004400u
#define UART_RX_IRQ 38
#elif UART_BASE == 0x40004800u
#define UART_RX_IRQ 39
#elif UART_BASE == 0x40004C00u
#define UART_RX_IRQ 52
#elif UART_BASE == 0x40005000u
#define UART_RX_IRQ 53
#elif UART_BASE == 0x40008000u
#define UART_RX_IRQ 70
#else
#define UART_RX_IRQ (-1)
#endif
#endif

#define REG(base, offset) (*(volatile uint32_t *)((base) + (offset)))

#define USART_CR1 REG(UART_BASE, 0x00u)
#define USART_CR2 REG(UART_BASE, 0x04u)
#define USART_CR3 REG(UART_BASE, 0x08u)
#define USART_BRR REG(UART_BASE, 0x0Cu)
#define USART_ISR REG(UART_BASE, 0x1Cu)
#define USART_ICR REG(UART_BASE, 0x20u)
#define USART_RDR REG(UART_BASE, 0x24u)
#define USART_TDR REG(UART_BASE, 0x28u)
#define CR1_UE (1u << 0)
#define CR1_RE (1u << 2)
#define CR1_TE (1u << 3)
#define CR1_RXNEIE (1u << 5)
#define CR3_OVRDIS (1u << 12)
#define ISR_RXNE (1u << 5)
#define ISR_TXE (1u << 7)
#define ICR_ALL 0x00121B5Fu /* PE FE NE ORE IDLE TC LBD CTS RTO EOB CM WUF: clear every flag */


#define RCC_BASE 0x40021000u
#define RCC_CR REG(RCC_BASE, 0x00u)
#define RCC_CFGR REG(RCC_BASE, 0x08u)
#define RCC_AHB2ENR REG(RCC_BASE, 0x4Cu)
#define RCC_APB1ENR1 REG(RCC_BASE, 0x58u)
#define RCC_CCIPR REG(RCC_BASE, 0x88u)
#define RCC_CR_HSION (1u << 8)
#define RCC_CR_HSIRDY (1u << 10)
#define RCC_APB1ENR1_PWREN (1u << 28)
#define PWR_CR2 REG(0x40007000u, 0x04u)
#define PWR_CR2_IOSV (1u << 9)

#define GPIO_BASE(port) (0x48000000u + 0x400u * (uint32_t)(port))
#define GPIO_MODER(port) REG(GPIO_BASE(port), 0x00u)
#define GPIO_OSPEEDR(port) REG(GPIO_BASE(port), 0x08u)
#define GPIO_PUPDR(port) REG(GPIO_BASE(port), 0x0Cu)
#define GPIO_AFR(port, pin) REG(GPIO_BASE(port), 0x20u + 4u * ((uint32_t)(pin) / 8u))

#if UART_LPUART
/* LPUART: BRR = 256 * f / baud, at least 0x300; f must lie in [3 * baud, 4096 * baud]. */
#define UART_BRR_VALUE ((uint32_t)((256ull * UART_CLOCK_HZ + UART_BAUD / 2u) / UART_BAUD))
_Static_assert(UART_BRR_VALUE >= 0x300u && UART_BRR_VALUE < (1u << 20), "LPUART BRR out of range");
#else
#define UART_BRR_VALUE ((uint32_t)((UART_CLOCK_HZ + UART_BAUD / 2u) / UART_BAUD))
_Static_assert(UART_BRR_VALUE >= 16u && UART_BRR_VALUE <= 0xFFFFu, "USART BRR out of range");
#endif

#ifdef UART_GPIO_PORT
static void pin_alternate(uint32_t pin, uint32_t pull_up) {
    const uint32_t shift2 = 2u * pin, shift4 = 4u * (pin % 8u);
    GPIO_AFR(UART_GPIO_PORT, pin) = (GPIO_AFR(UART_GPIO_PORT, pin) & ~(0xFu << shift4)) | ((uint32_t)UART_GPIO_AF << shift4);
    GPIO_OSPEEDR(UART_GPIO_PORT) |= 0x2u << shift2; /* high speed */
    GPIO_PUPDR(UART_GPIO_PORT) = (GPIO_PUPDR(UART_GPIO_PORT) & ~(0x3u << shift2)) | (pull_up << shift2);
    /* L4 pins reset to analog (0b11): clear both bits, then alternate function (0b10). */
    GPIO_MODER(UART_GPIO_PORT) = (GPIO_MODER(UART_GPIO_PORT) & ~(0x3u << shift2)) | (0x2u << shift2);
}
#endif

void board_init(void) {
#if defined(L4_SYSCLK_HSI16) && L4_SYSCLK_HSI16
    RCC_CR |= RCC_CR_HSION;
    while (!(RCC_CR & RCC_CR_HSIRDY)) {
    }
    RCC_CFGR = (RCC_CFGR & ~0x3u) | 0x1u; /* SW = HSI16 */
    while (((RCC_CFGR >> 2) & 0x3u) != 0x1u) { /* SWS */
    }
#endif
#if defined(UART_GPIO_VDDIO2) && UART_GPIO_VDDIO2
    RCC_APB1ENR1 |= RCC_APB1ENR1_PWREN;
    (void)RCC_APB1ENR1;
    PWR_CR2 |= PWR_CR2_IOSV;
#endif
#ifdef UART_RCC_ENR_OFFSET
    REG(RCC_BASE, UART_RCC_ENR_OFFSET) |= 1u << UART_RCC_ENR_BIT;
    (void)REG(RCC_BASE, UART_RCC_ENR_OFFSET); /* read back: the clock is on before the first access */
#endif
#ifdef UART_CCIPR_SHIFT
    RCC_CCIPR = (RCC_CCIPR & ~(0x3u << UART_CCIPR_SHIFT)) | ((uint32_t)UART_CCIPR_SEL << UART_CCIPR_SHIFT);
#endif
#ifdef UART_GPIO_PORT
    RCC_AHB2ENR |= 1u << UART_GPIO_PORT;
    (void)RCC_AHB2ENR;
    pin_alternate(UART_TX_PIN, 0u);
    pin_alternate(UART_RX_PIN, 1u); /* pull-up keeps an idle, unconnected RX line high */
#endif
    USART_CR1 = 0;     /* UE = 0: BRR and CR2/CR3 are writable */
    USART_CR2 = 0;     /* 1 stop bit */
    USART_CR3 = CR3_OVRDIS;
    USART_BRR = UART_BRR_VALUE;
    USART_ICR = ICR_ALL;
#if UART_RX_IRQ >= 0
    USART_CR1 = CR1_TE | CR1_RE | CR1_RXNEIE; /* 8N1 */
    USART_CR1 |= CR1_UE;
    uart_rx_hold(0);
#else
    USART_CR1 = CR1_TE | CR1_RE;
    USART_CR1 |= CR1_UE;
#endif
}

void uart_write(const uint8_t *data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        while (!(USART_ISR & ISR_TXE)) {
        }
        USART_TDR = data[i];
    }
}

/* The shared receive path (uart_rx_ring.h), on this peripheral's registers. */
#define RX_READY() (USART_ISR & ISR_RXNE)
#define RX_TAKE() (uint8_t)USART_RDR
#define RX_ACK() ((void)0)
#define RX_PAUSE() (USART_CR1 &= ~CR1_RXNEIE)
#define RX_RESUME() (USART_CR1 |= CR1_RXNEIE)
#include "uart_rx_ring.h"
