/* Test-only stand-in for bcryptprimitives.dll, which Wine 8.0 lacks: deno.exe imports ProcessPrng
 * from it. Fills the buffer from BCryptGenRandom (system RNG), in chunks below 4 GiB. */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
