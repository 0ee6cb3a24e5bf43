/* uart_config.h - the UART settings every driver takes from the board file (-D flags
 * from host/build.py), with their defaults. */
#ifndef TM_UART_CONFIG_H
#define TM_UART_CONFIG_H

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

#endif /* TM_UART_CONFIG_H */
