/* Test-only: Wine 8.0 (Debian 12) has no bcryptprimitives.dll, from which Rust's std
   (>= 1.78, x86_64-pc-windows-gnu) imports ProcessPrng for its random numbers. This
   stand-in answers it with RtlGenRandom (advapi32's SystemFunction036). Never shipped:
   every Windows 10+ machine has the real DLL. Built by scripts/wine-prefix. */
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    /* RtlGenRandom takes a ULONG length: fill large requests in pieces. */
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
