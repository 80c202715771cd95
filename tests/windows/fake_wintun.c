/*
 * Test-only fake wintun.dll for running the project's wintun backend under Wine. Same exports and
 * signatures as Wintun; the "IP packets" of the adapter travel as UDP datagrams on 127.0.0.1:
 *   - a packet the application sends (WintunSendPacket, i.e. into the OS) goes to 127.0.0.1:$WINTUN_FAKE_PEER_PORT
 *   - datagrams that arrive on 127.0.0.1:$WINTUN_FAKE_PORT are the packets the OS sends into the adapter
 *     (WintunReceivePacket); the read-wait event is a WSAEventSelect(FD_READ) event.
 * A Linux-side bridge moves those datagrams to and from a real Linux tun device.
 * Wintun behaviours kept: ERROR_NO_MORE_ITEMS when empty, ERROR_BUFFER_OVERFLOW when the send "ring" is
 * full, ERROR_HANDLE_EOF after the session ended, capacity bounds (0x20000-0x4000000, power of two).
 * Build: x86_64-w64-mingw32-gcc -O2 -shared -o wintun.dll fake_wintun.c -lws2_32
 */
#include <winsock2.h>
#include <windows.h>
#include <iphlpapi.h>
#include <netioapi.h>
#include <stdlib.h>
#include <string.h>

typedef struct { WCHAR name[128]; ULONG64 luid; } ADAPTER;
typedef struct {
    SOCKET s;
    WSAEVENT ev;
    struct sockaddr_in peer;
    LONG outstanding;
    LONG capacity;
    BOOL ended;
} SESSION;

static BOOL wsa_ready;
static LONG64 next_luid = 0x1000;

static void wsa(void)
{
    if (!wsa_ready) {
        WSADATA d;
        WSAStartup(MAKEWORD(2, 2), &d);
        wsa_ready = TRUE;
    }
}

static int env_port(const char *name)
{
    char b[16];
    DWORD n = GetEnvironmentVariableA(name, b, sizeof(b));
    return (n > 0 && n < sizeof(b)) ? atoi(b) : 0;
}

__declspec(dllexport) ADAPTER *WINAPI WintunCreateAdapter(const WCHAR *name, const WCHAR *type, const GUID *guid)
{
    (void)type; (void)guid;
    wsa();
    if (!name || !*name) { SetLastError(ERROR_INVALID_PARAMETER); return NULL; }
    ADAPTER *a = calloc(1, sizeof(ADAPTER));
    lstrcpynW(a->name, name, 128);
    /* the LUID of interface 1 (Wine's loopback), so that LUID -> index works as for a real adapter */
    NET_LUID l;
    if (ConvertInterfaceIndexToLuid(1, &l) == NO_ERROR) a->luid = l.Value;
    else a->luid = InterlockedIncrement64(&next_luid);
    return a;
}

__declspec(dllexport) ADAPTER *WINAPI WintunOpenAdapter(const WCHAR *name)
{
    return WintunCreateAdapter(name, L"", NULL);
}

__declspec(dllexport) void WINAPI WintunCloseAdapter(ADAPTER *a) { free(a); }

__declspec(dllexport) BOOL WINAPI WintunDeleteDriver(void) { return TRUE; }

__declspec(dllexport) void WINAPI WintunGetAdapterLUID(ADAPTER *a, ULONG64 *luid) { *luid = a->luid; }

__declspec(dllexport) DWORD WINAPI WintunGetRunningDriverVersion(void) { return 0x000E0000; }

__declspec(dllexport) void WINAPI WintunSetLogger(void *cb) { (void)cb; }

__declspec(dllexport) SESSION *WINAPI WintunStartSession(ADAPTER *a, DWORD capacity)
{
    (void)a;
    if (capacity < 0x20000 || capacity > 0x4000000 || (capacity & (capacity - 1))) {
        SetLastError(ERROR_INVALID_PARAMETER);
        return NULL;
    }
    int port = env_port("WINTUN_FAKE_PORT"), peer = env_port("WINTUN_FAKE_PEER_PORT");
    if (!port || !peer) { SetLastError(ERROR_FILE_NOT_FOUND); return NULL; }
    SESSION *s = calloc(1, sizeof(SESSION));
    s->capacity = (LONG)capacity;
    s->s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in me = {0};
    me.sin_family = AF_INET;
    me.sin_port = htons((u_short)port);
    me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s->s == INVALID_SOCKET || bind(s->s, (struct sockaddr *)&me, sizeof(me)) != 0) {
        DWORD e = WSAGetLastError();
        if (s->s != INVALID_SOCKET) closesocket(s->s);
        free(s);
        SetLastError(e);
        return NULL;
    }
    int big = 4 << 20;
    setsockopt(s->s, SOL_SOCKET, SO_RCVBUF, (char *)&big, sizeof(big));
    setsockopt(s->s, SOL_SOCKET, SO_SNDBUF, (char *)&big, sizeof(big));
    s->peer.sin_family = AF_INET;
    s->peer.sin_port = htons((u_short)peer);
    s->peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->ev = WSACreateEvent();
    WSAEventSelect(s->s, s->ev, FD_READ); /* also makes the socket non-blocking */
    return s;
}

__declspec(dllexport) void WINAPI WintunEndSession(SESSION *s)
{
    s->ended = TRUE;
    closesocket(s->s);
    WSASetEvent(s->ev); /* wake a waiting reader: it then sees ERROR_HANDLE_EOF */
}

__declspec(dllexport) HANDLE WINAPI WintunGetReadWaitEvent(SESSION *s) { return s->ev; }

__declspec(dllexport) BYTE *WINAPI WintunReceivePacket(SESSION *s, DWORD *size)
{
    if (s->ended) { SetLastError(ERROR_HANDLE_EOF); return NULL; }
    BYTE *buf = malloc(0x10000);
    /* reset first, then read: a datagram that arrives after a failed recv sets the event again */
    WSAResetEvent(s->ev);
    int n = recv(s->s, (char *)buf, 0x10000, 0);
    if (n <= 0) {
        free(buf);
        SetLastError(ERROR_NO_MORE_ITEMS);
        return NULL;
    }
    *size = (DWORD)n;
    return buf;
}

__declspec(dllexport) void WINAPI WintunReleaseReceivePacket(SESSION *s, const BYTE *p) { (void)s; free((void *)p); }

__declspec(dllexport) BYTE *WINAPI WintunAllocateSendPacket(SESSION *s, DWORD size)
{
    if (s->ended) { SetLastError(ERROR_HANDLE_EOF); return NULL; }
    if (size == 0 || size > 0xFFFF) { SetLastError(ERROR_INVALID_PARAMETER); return NULL; }
    /* a ring of `capacity` bytes: too many packets allocated and not yet sent means it is full */
    if ((InterlockedIncrement(&s->outstanding) - 1) * 0x10000L >= s->capacity) {
        InterlockedDecrement(&s->outstanding);
        SetLastError(ERROR_BUFFER_OVERFLOW);
        return NULL;
    }
    BYTE *p = malloc(size + sizeof(DWORD));
    *(DWORD *)p = size;
    return p + sizeof(DWORD);
}

__declspec(dllexport) void WINAPI WintunSendPacket(SESSION *s, const BYTE *p)
{
    BYTE *base = (BYTE *)p - sizeof(DWORD);
    DWORD size = *(DWORD *)base;
    if (!s->ended) sendto(s->s, (const char *)p, (int)size, 0, (struct sockaddr *)&s->peer, sizeof(s->peer));
    free(base);
    InterlockedDecrement(&s->outstanding);
}
