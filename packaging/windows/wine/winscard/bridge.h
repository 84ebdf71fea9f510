/* The one argument block both halves of the test-only winscard bridge agree on.
 *
 * The PE half is LLP64 (a DWORD is 4 bytes, as Windows programs expect); the Unix
 * half calls pcsc-lite, whose DWORD is an unsigned long (8 bytes on x86_64 Linux).
 * Every integer here is 64 bits and every pointer is 64 bits on both sides, so the
 * block has the same layout in both ABIs and no field needs packing rules. */
#ifndef VITALE_WINSCARD_BRIDGE_H
#define VITALE_WINSCARD_BRIDGE_H
#include <stdint.h>

enum bridge_op {
    OP_ESTABLISH, OP_RELEASE, OP_IS_VALID, OP_CANCEL, OP_LIST_READERS, OP_STATUS_CHANGE,
    OP_CONNECT, OP_RECONNECT, OP_DISCONNECT, OP_BEGIN, OP_END, OP_STATUS, OP_TRANSMIT,
    OP_COUNT
};

/* The widest ATR either side stores (Windows: 36 bytes, pcsc-lite: 33). */
#define BRIDGE_ATR_MAX 36
/* The most reader states one SCardGetStatusChange may watch through the bridge. */
#define BRIDGE_MAX_STATES 32
/* Windows and pcsc-lite number SCARD_PROTOCOL_RAW differently; T0 and T1 agree. */
#define WIN_PROTOCOL_RAW 0x00010000u

struct bridge_state {
    const char *reader;
    uint64_t current, event, atr_len;
    unsigned char atr[BRIDGE_ATR_MAX];
};

struct bridge_call {
    uint64_t handle;            /* SCARDCONTEXT or SCARDHANDLE, whichever the call takes */
    uint64_t arg[3];            /* scope | share, protocols, disposition | timeout */
    const char *name;           /* reader name, or reader groups for the list */
    void *out;                  /* caller's reader list / receive buffer */
    uint64_t out_len;           /* in: its size (0 = size query); out: bytes needed or written */
    const void *in;             /* transmit: the command APDU */
    uint64_t in_len;
    struct bridge_state *states;
    uint64_t count;
    uint64_t result[3];         /* new handle, active protocol, card state (Windows numbering) */
    char names[1024];           /* SCardStatus: the reader's names */
    uint64_t names_len;
    unsigned char atr[BRIDGE_ATR_MAX];
    uint64_t atr_len;
};
#endif
