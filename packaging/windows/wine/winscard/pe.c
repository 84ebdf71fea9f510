/* PE half of the test-only winscard bridge: the winscard.dll ABI that
 * vitale-bridge.exe links against, forwarded to unix.c through Wine's unix-call
 * mechanism (the role Wine >= 9's own winscard plays; Debian 12's Wine 8.0 has only
 * stubs). Never shipped: scripts/wine-winscard builds it for the Wine tests.
 *
 * Only the ANSI entry points and the calling patterns of the `pcsc` crate are
 * covered; SCARD_AUTOALLOCATE is refused rather than emulated. */
#include <stdarg.h>
#include <string.h>
#include "windef.h"
#include "winbase.h"
#include "winternl.h"
#include "winscard.h"
#include "bridge.h"

/* Provided by Wine's ntdll and winecrt0 (no public header in Wine 8.0's libwine-dev). */
typedef UINT64 unixlib_handle_t;
extern unixlib_handle_t __wine_unixlib_handle;
extern NTSTATUS (WINAPI *__wine_unix_call_dispatcher)(unixlib_handle_t, unsigned int, void *);
extern NTSTATUS WINAPI __wine_init_unix_call(void);

static BOOL unix_ready;

const SCARD_IO_REQUEST g_rgSCardT0Pci = { SCARD_PROTOCOL_T0, sizeof(SCARD_IO_REQUEST) };
const SCARD_IO_REQUEST g_rgSCardT1Pci = { SCARD_PROTOCOL_T1, sizeof(SCARD_IO_REQUEST) };
const SCARD_IO_REQUEST g_rgSCardRawPci = { SCARD_PROTOCOL_RAW, sizeof(SCARD_IO_REQUEST) };

/* A bridge without its Unix half (winscard.so missing) must fail like a broken
 * service, not crash the caller. */
static LONG forward(enum bridge_op op, struct bridge_call *c)
{
    if (!unix_ready) return SCARD_F_INTERNAL_ERROR;
    return (LONG)__wine_unix_call_dispatcher(__wine_unixlib_handle, op, c);
}

static LONG on_handle(enum bridge_op op, ULONG_PTR handle, DWORD arg)
{
    struct bridge_call c;
    memset(&c, 0, sizeof c);
    c.handle = handle;
    c.arg[2] = arg;
    return forward(op, &c);
}

LONG WINAPI SCardEstablishContext(DWORD scope, LPCVOID r1, LPCVOID r2, LPSCARDCONTEXT ctx)
{
    struct bridge_call c;
    LONG rc;
    if (!ctx) return SCARD_E_INVALID_PARAMETER;
    memset(&c, 0, sizeof c);
    c.arg[0] = scope;
    rc = forward(OP_ESTABLISH, &c);
    if (rc == SCARD_S_SUCCESS) *ctx = (SCARDCONTEXT)c.result[0];
    return rc;
}

LONG WINAPI SCardReleaseContext(SCARDCONTEXT ctx) { return on_handle(OP_RELEASE, ctx, 0); }
LONG WINAPI SCardIsValidContext(SCARDCONTEXT ctx) { return on_handle(OP_IS_VALID, ctx, 0); }
LONG WINAPI SCardCancel(SCARDCONTEXT ctx) { return on_handle(OP_CANCEL, ctx, 0); }
LONG WINAPI SCardBeginTransaction(SCARDHANDLE card) { return on_handle(OP_BEGIN, card, 0); }
LONG WINAPI SCardEndTransaction(SCARDHANDLE card, DWORD disp) { return on_handle(OP_END, card, disp); }
LONG WINAPI SCardDisconnect(SCARDHANDLE card, DWORD disp) { return on_handle(OP_DISCONNECT, card, disp); }

LONG WINAPI SCardListReadersA(SCARDCONTEXT ctx, LPCSTR groups, LPSTR buf, LPDWORD len)
{
    struct bridge_call c;
    LONG rc;
    if (!len || *len == SCARD_AUTOALLOCATE) return SCARD_E_INVALID_PARAMETER;
    memset(&c, 0, sizeof c);
    c.handle = ctx;
    c.name = groups;
    c.out = buf;
    c.out_len = buf ? *len : 0;
    rc = forward(OP_LIST_READERS, &c);
    if (rc == SCARD_S_SUCCESS || rc == SCARD_E_INSUFFICIENT_BUFFER) *len = (DWORD)c.out_len;
    return rc;
}

LONG WINAPI SCardGetStatusChangeA(SCARDCONTEXT ctx, DWORD timeout, LPSCARD_READERSTATEA st, DWORD n)
{
    struct bridge_state states[BRIDGE_MAX_STATES];
    struct bridge_call c;
    DWORD i;
    LONG rc;
    if (n > BRIDGE_MAX_STATES || (n && !st)) return SCARD_E_INVALID_PARAMETER;
    memset(&c, 0, sizeof c);
    memset(states, 0, sizeof states);
    for (i = 0; i < n; i++) {
        states[i].reader = st[i].szReader;
        states[i].current = st[i].dwCurrentState;
    }
    c.handle = ctx;
    c.arg[2] = timeout;  /* INFINITE (0xFFFFFFFF) means the same to pcsc-lite */
    c.states = states;
    c.count = n;
    rc = forward(OP_STATUS_CHANGE, &c);
    if (rc == SCARD_S_SUCCESS || rc == SCARD_E_TIMEOUT) {
        for (i = 0; i < n; i++) {
            DWORD atr_len = (DWORD)(states[i].atr_len < sizeof st[i].rgbAtr ? states[i].atr_len : sizeof st[i].rgbAtr);
            st[i].dwEventState = (DWORD)states[i].event;
            st[i].cbAtr = atr_len;
            memcpy(st[i].rgbAtr, states[i].atr, atr_len);
        }
    }
    return rc;
}

LONG WINAPI SCardConnectA(SCARDCONTEXT ctx, LPCSTR reader, DWORD share, DWORD protocols,
                          LPSCARDHANDLE card, LPDWORD active)
{
    struct bridge_call c;
    LONG rc;
    if (!card) return SCARD_E_INVALID_PARAMETER;
    memset(&c, 0, sizeof c);
    c.handle = ctx;
    c.name = reader;
    c.arg[0] = share;
    c.arg[1] = protocols;
    rc = forward(OP_CONNECT, &c);
    if (rc == SCARD_S_SUCCESS) {
        *card = (SCARDHANDLE)c.result[0];
        if (active) *active = (DWORD)c.result[1];
    }
    return rc;
}

LONG WINAPI SCardReconnect(SCARDHANDLE card, DWORD share, DWORD protocols, DWORD init, LPDWORD active)
{
    struct bridge_call c;
    LONG rc;
    memset(&c, 0, sizeof c);
    c.handle = card;
    c.arg[0] = share;
    c.arg[1] = protocols;
    c.arg[2] = init;
    rc = forward(OP_RECONNECT, &c);
    if (rc == SCARD_S_SUCCESS && active) *active = (DWORD)c.result[1];
    return rc;
}

/* Copies `len` bytes to a caller's buffer of `*cap` bytes, Windows-style: a NULL
 * buffer asks for the size only. */
static LONG give(void *dst, LPDWORD cap, const void *src, DWORD len)
{
    if (!cap) return SCARD_S_SUCCESS;
    if (*cap == SCARD_AUTOALLOCATE) return SCARD_E_INVALID_PARAMETER;
    if (dst && *cap < len) { *cap = len; return SCARD_E_INSUFFICIENT_BUFFER; }
    if (dst) memcpy(dst, src, len);
    *cap = len;
    return SCARD_S_SUCCESS;
}

LONG WINAPI SCardStatusA(SCARDHANDLE card, LPSTR names, LPDWORD names_len, LPDWORD state,
                         LPDWORD protocol, LPBYTE atr, LPDWORD atr_len)
{
    struct bridge_call c;
    LONG rc;
    memset(&c, 0, sizeof c);
    c.handle = card;
    rc = forward(OP_STATUS, &c);
    if (rc != SCARD_S_SUCCESS) return rc;
    if ((rc = give(names, names_len, c.names, (DWORD)c.names_len)) != SCARD_S_SUCCESS) return rc;
    if ((rc = give(atr, atr_len, c.atr, (DWORD)c.atr_len)) != SCARD_S_SUCCESS) return rc;
    if (state) *state = (DWORD)c.result[2];
    if (protocol) *protocol = (DWORD)c.result[1];
    return SCARD_S_SUCCESS;
}

LONG WINAPI SCardTransmit(SCARDHANDLE card, LPCSCARD_IO_REQUEST send, LPCBYTE sbuf, DWORD slen,
                          LPSCARD_IO_REQUEST recv, LPBYTE rbuf, LPDWORD rlen)
{
    struct bridge_call c;
    LONG rc;
    if (!send || !sbuf || !rlen) return SCARD_E_INVALID_PARAMETER;
    memset(&c, 0, sizeof c);
    c.handle = card;
    c.arg[1] = send->dwProtocol;
    c.in = sbuf;
    c.in_len = slen;
    c.out = rbuf;
    c.out_len = *rlen;
    rc = forward(OP_TRANSMIT, &c);
    if (rc == SCARD_S_SUCCESS || rc == SCARD_E_INSUFFICIENT_BUFFER) *rlen = (DWORD)c.out_len;
    if (rc == SCARD_S_SUCCESS && recv) {
        recv->dwProtocol = send->dwProtocol;
        recv->cbPciLength = sizeof(SCARD_IO_REQUEST);
    }
    return rc;
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, void *reserved)
{
    if (reason == DLL_PROCESS_ATTACH) {
        DisableThreadLibraryCalls(inst);
        unix_ready = __wine_init_unix_call() == 0;
    }
    return TRUE;
}
