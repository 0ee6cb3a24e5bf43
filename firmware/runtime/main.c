/* main.c - firmware entry: bring up the board, then serve the protocol. */
#include "board.h"
#include "protocol.h"

int main(void) {
    board_init();
    protocol_run();
    return 0;
}
