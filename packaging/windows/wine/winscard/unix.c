/* Unix half of the test-only winscard bridge: each op of bridge.h as a pcsc-lite
 * call. Wine loads this as winscard.so next to the builtin winscard.dll and runs
 * these on the caller's thread, so a blocking SCardGetStatusChange blocks only the
 * Windows thread that asked (SCardCancel from another thread wakes it, as on
 * Windows). */
#include <string.h>
#include <PCSC/winscard.h>
#include "bridge.h"

/* Windows numbers SCARD_PROTOCOL_RAW 0x10000, pcsc-lite 4; T0 (1) and T1 (2) agree. */
static DWORD protocols_to_lite(uint64_t win)
{
    DWORD lite = (DWORD)(win & (SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1));
    if (win & WIN_PROTOCOL_RAW) lite |= SCARD_PROTOCOL_RAW;
    return lite;
}

static uint64_t protocols_to_win(DWORD lite)
{
    uint64_t win = lite & (SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1);
    if (lite & SCARD_PROTOCOL_RAW) win |= WIN_PROTOCOL_RAW;
    return win;
}

/* SCardStatus: pcsc-lite reports a bit mask, Windows one value, the most advanced
 * state reached (SCARD_ABSENT 1 ... SCARD_SPECIFIC 6; 0 unknown). */
static uint64_t card_state_to_win(DWORD lite)
{
    if (lite & SCARD_SPECIFIC) return 6;
    if (lite & SCARD_NEGOTIABLE) return 5;
    if (lite & SCARD_POWERED) return 4;
    if (lite & SCARD_SWALLOWED) return 3;
    if (lite & SCARD_PRESENT) return 2;
    if (lite & SCARD_ABSENT) return 1;
    return 0;
}

static int op_establish(void *p)
{
    struct bridge_call *c = p;
    SCARDCONTEXT ctx = 0;
    LONG rc = SCardEstablishContext((DWORD)c->arg[0], NULL, NULL, &ctx);
    c->result[0] = ctx;
    return (int)rc;
}

static int op_release(void *p) { return (int)SCardReleaseContext(((struct bridge_call *)p)->handle); }
static int op_is_valid(void *p) { return (int)SCardIsValidContext(((struct bridge_call *)p)->handle); }
static int op_cancel(void *p) { return (int)SCardCancel(((struct bridge_call *)p)->handle); }
static int op_begin(void *p) { return (int)SCardBeginTransaction(((struct bridge_call *)p)->handle); }

static int op_end(void *p)
{
    struct bridge_call *c = p;
    return (int)SCardEndTransaction(c->handle, (DWORD)c->arg[2]);
}

static int op_disconnect(void *p)
{
    struct bridge_call *c = p;
    return (int)SCardDisconnect(c->handle, (DWORD)c->arg[2]);
}

static int op_list_readers(void *p)
{
    struct bridge_call *c = p;
    DWORD len = (DWORD)c->out_len;
    LONG rc = SCardListReaders(c->handle, c->name, c->out ? c->out : NULL, &len);
    c->out_len = len;
    return (int)rc;
}

static int op_status_change(void *p)
{
    struct bridge_call *c = p;
    SCARD_READERSTATE st[BRIDGE_MAX_STATES];
    uint64_t i;
    LONG rc;
    if (c->count > BRIDGE_MAX_STATES) return (int)SCARD_E_INVALID_PARAMETER;
    memset(st, 0, sizeof st);
    for (i = 0; i < c->count; i++) {
        st[i].szReader = c->states[i].reader;
        st[i].dwCurrentState = (DWORD)c->states[i].current;
    }
    rc = SCardGetStatusChange(c->handle, (DWORD)c->arg[2], st, (DWORD)c->count);
    for (i = 0; i < c->count; i++) {
        DWORD n = st[i].cbAtr < MAX_ATR_SIZE ? st[i].cbAtr : MAX_ATR_SIZE;
        c->states[i].event = st[i].dwEventState;
        c->states[i].atr_len = n;
        memcpy(c->states[i].atr, st[i].rgbAtr, n);
    }
    return (int)rc;
}

static int op_connect(void *p)
{
    struct bridge_call *c = p;
    SCARDHANDLE card = 0;
    DWORD active = 0;
    LONG rc = SCardConnect(c->handle, c->name, (DWORD)c->arg[0], protocols_to_lite(c->arg[1]), &card, &active);
    c->result[0] = card;
    c->result[1] = protocols_to_win(active);
    return (int)rc;
}

static int op_reconnect(void *p)
{
    struct bridge_call *c = p;
    DWORD active = 0;
    LONG rc = SCardReconnect(c->handle, (DWORD)c->arg[0], protocols_to_lite(c->arg[1]), (DWORD)c->arg[2], &active);
    c->result[1] = protocols_to_win(active);
    return (int)rc;
}

static int op_status(void *p)
{
    struct bridge_call *c = p;
    DWORD names_len = sizeof c->names, state = 0, protocol = 0, atr_len = BRIDGE_ATR_MAX;
    LONG rc = SCardStatus(c->handle, c->names, &names_len, &state, &protocol, c->atr, &atr_len);
    c->names_len = names_len;
    c->atr_len = atr_len;
    c->result[1] = protocols_to_win(protocol);
    c->result[2] = card_state_to_win(state);
    return (int)rc;
}

static int op_transmit(void *p)
{
    struct bridge_call *c = p;
    SCARD_IO_REQUEST send = { protocols_to_lite(c->arg[1]), sizeof(SCARD_IO_REQUEST) };
    DWORD len = (DWORD)c->out_len;
    LONG rc = SCardTransmit(c->handle, &send, c->in, (DWORD)c->in_len, NULL, c->out, &len);
    c->out_len = len;
    return (int)rc;
}

typedef int (*bridge_fn)(void *);
/* Indexed by enum bridge_op: the order must match bridge.h. */
const bridge_fn __wine_unix_call_funcs[OP_COUNT] = {
    [OP_ESTABLISH] = op_establish, [OP_RELEASE] = op_release, [OP_IS_VALID] = op_is_valid,
    [OP_CANCEL] = op_cancel, [OP_LIST_READERS] = op_list_readers,
    [OP_STATUS_CHANGE] = op_status_change, [OP_CONNECT] = op_connect,
    [OP_RECONNECT] = op_reconnect, [OP_DISCONNECT] = op_disconnect, [OP_BEGIN] = op_begin,
    [OP_END] = op_end, [OP_STATUS] = op_status, [OP_TRANSMIT] = op_transmit,
};
