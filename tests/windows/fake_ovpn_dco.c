/*
 * Test-only fake of the ovpn-dco-win kernel driver, for running the project's Windows code under Wine
 * (winedevice.exe loads it as a kernel service). Not a data plane: it checks every call it receives
 * against the user API (struct sizes, field values, call order NEW_PEER -> NEW_KEY -> SET_PEER ->
 * START_VPN), keeps the driver's state, statistics and pending-read semantics, and writes a journal of
 * the calls that tests read back through the non-exclusive version device.
 *
 * Devices: \Device\ovpn-dco (exclusive: one open handle) and \Device\ovpn-dco-ver (shared).
 * Private IOCTLs (test only, on either device):
 *   FAKE_GET_JOURNAL (n=0x800): output = the journal, ASCII lines.
 *   FAKE_SET_DELAY (n=0x804): ULONG ms; 0 = varied delays (1-40 ms), else every pended request completes
 *     after exactly that long (longer than a caller's timeout: the caller must cancel and wait).
 *
 * Like the KMDF driver, it keeps requests pending: a ReadFile until a control packet, keepalive expiry,
 * TCP abort or DEL_PEER (STATUS_CANCELLED) ends it; a WriteFile until its "socket send" completes; a TCP
 * NEW_PEER until "connected". Pended requests are completed later by a worker thread, and can be cancelled
 * (CancelIoEx, handle close); a cancelled TCP NEW_PEER leaves its half-made peer behind, as the real driver
 * (it registers the peer before it connects).
 *   FAKE_INJECT      (n=0x801): input = u32 what [+ data]: 1 = a control packet arrives (data), 2 = keepalive
 *                               timeout (pending reads fail with STATUS_CONNECTION_DISCONNECTED),
 *                               3 = the server closed TCP (STATUS_CONNECTION_ABORTED), 4 = reset everything.
 *   FAKE_SET_TCP     (n=0x802): input = u32: 0 = TCP connects succeed, 1 = they are refused.
 * Build: x86_64-w64-mingw32-gcc -O2 -I/usr/share/mingw-w64/include/ddk -shared -nostdlib
 *        -Wl,--subsystem,native -e DriverEntry -o ovpn-dco.sys fake_ovpn_dco.c -lntoskrnl -lhal
 */
#include <ntddk.h>

#define IOCTL(n) CTL_CODE(FILE_DEVICE_UNKNOWN, n, METHOD_BUFFERED, FILE_ANY_ACCESS)
#define OVPN_IOCTL_NEW_PEER IOCTL(1)
#define OVPN_IOCTL_GET_STATS IOCTL(2)
#define OVPN_IOCTL_NEW_KEY IOCTL(3)
#define OVPN_IOCTL_SWAP_KEYS IOCTL(4)
#define OVPN_IOCTL_SET_PEER IOCTL(5)
#define OVPN_IOCTL_START_VPN IOCTL(6)
#define OVPN_IOCTL_DEL_PEER IOCTL(7)
#define OVPN_IOCTL_GET_VERSION IOCTL(8)
#define OVPN_IOCTL_NEW_KEY_V2 IOCTL(9)
#define OVPN_IOCTL_SET_MODE IOCTL(10)
#define OVPN_IOCTL_MP_START_VPN IOCTL(11)
#define OVPN_IOCTL_MP_NEW_PEER IOCTL(12)
#define OVPN_IOCTL_MP_SET_PEER IOCTL(13)
#define OVPN_IOCTL_NOTIFY_EVENT IOCTL(14)
#define OVPN_IOCTL_MP_DEL_PEER IOCTL(15)
#define OVPN_IOCTL_MP_SWAP_KEYS IOCTL(16)
#define OVPN_IOCTL_MP_ADD_IROUTE IOCTL(17)
#define OVPN_IOCTL_MP_DEL_IROUTE IOCTL(18)
#define OVPN_IOCTL_GET_PEER_STATS IOCTL(19)
#ifndef STATUS_OBJECTID_EXISTS
#define STATUS_OBJECTID_EXISTS ((NTSTATUS)0xC000022BL)
#endif
#define FAKE_GET_JOURNAL IOCTL(0x800)
#define FAKE_INJECT IOCTL(0x801)
#define FAKE_SET_TCP IOCTL(0x802)
#define FAKE_SET_VERSION IOCTL(0x803)
#define FAKE_SET_DELAY IOCTL(0x804)
/* the newest header's only CryptoOptions bit (the older AEAD_TAG_END/64BIT_PKTID bits are gone) */
#define CRYPTO_OPTIONS_EPOCH (1 << 1)

/* Layouts restated from uapi/ovpn-dco.h (mingw's ws2def.h does not compile in kernel mode). */
typedef struct { USHORT family; USHORT port; UCHAR addr[4]; UCHAR zero[8]; } SIN4;
typedef struct { USHORT family; USHORT port; ULONG flow; UCHAR addr[16]; ULONG scope; } SIN6;
typedef union { SIN4 a4; SIN6 a6; } SADDR;
typedef struct { SADDR Local; SADDR Remote; LONG Proto; } OVPN_NEW_PEER;
typedef struct { UCHAR Key[32]; UCHAR KeyLen; UCHAR NonceTail[8]; } OVPN_KEY_DIRECTION;
typedef struct {
    OVPN_KEY_DIRECTION Encrypt, Decrypt;
    LONG KeySlot, CipherAlg;
    UCHAR KeyId;
    LONG PeerId;
} OVPN_CRYPTO_DATA;
typedef struct { OVPN_CRYPTO_DATA V1; ULONG CryptoOptions; } OVPN_CRYPTO_DATA_V2;
typedef struct { LONG KeepaliveInterval, KeepaliveTimeout, MSS; } OVPN_SET_PEER;
/* multipeer structs, from the newest uapi/ovpn-dco.h (../shared/uapi-layout.md) */
typedef struct { SADDR ListenAddress; LONG IPv6Only; } OVPN_MP_START_VPN;
typedef struct { SADDR Local, Remote; UCHAR VpnAddr4[4]; UCHAR VpnAddr6[16]; LONG PeerId; } OVPN_MP_NEW_PEER;
typedef struct { LONG PeerId, KeepaliveInterval, KeepaliveTimeout, MSS; } OVPN_MP_SET_PEER;
typedef struct { LONG Cmd, PeerId, DelPeerReason; LONG pad; UCHAR FloatAddress[128]; } OVPN_NOTIFY_EVENT;
typedef struct { UCHAR Addr[16]; LONG Netbits, PeerId, IPv6; } OVPN_MP_IROUTE;
typedef struct { LONG PeerId; LONG pad; LONG64 LinkRxBytes, LinkTxBytes, VpnRxBytes, VpnTxBytes; } OVPN_PEER_STATS;
typedef struct {
    LONG LostInControlPackets, LostOutControlPackets, LostInDataPackets, LostOutDataPackets;
    LONG ReceivedDataPackets, ReceivedControlPackets, SentControlPackets, SentDataPackets;
    LONG64 TransportBytesSent, TransportBytesReceived, TunBytesSent, TunBytesReceived;
} OVPN_STATS;
typedef struct { LONG Major, Minor, Patch; } OVPN_VERSION;

_Static_assert(sizeof(SIN4) == 16, "SOCKADDR_IN");
_Static_assert(sizeof(SIN6) == 28, "SOCKADDR_IN6");
_Static_assert(sizeof(OVPN_NEW_PEER) == 60, "OVPN_NEW_PEER");
_Static_assert(sizeof(OVPN_KEY_DIRECTION) == 41, "OVPN_KEY_DIRECTION");
_Static_assert(sizeof(OVPN_CRYPTO_DATA) == 100, "OVPN_CRYPTO_DATA");
_Static_assert(sizeof(OVPN_CRYPTO_DATA_V2) == 104, "OVPN_CRYPTO_DATA_V2");
_Static_assert(sizeof(OVPN_SET_PEER) == 12, "OVPN_SET_PEER");
_Static_assert(sizeof(OVPN_MP_START_VPN) == 32, "OVPN_MP_START_VPN");
_Static_assert(sizeof(OVPN_MP_NEW_PEER) == 80, "OVPN_MP_NEW_PEER");
_Static_assert(sizeof(OVPN_MP_SET_PEER) == 16, "OVPN_MP_SET_PEER");
_Static_assert(sizeof(OVPN_NOTIFY_EVENT) == 144, "OVPN_NOTIFY_EVENT");
_Static_assert(sizeof(OVPN_MP_IROUTE) == 28, "OVPN_MP_IROUTE");
_Static_assert(sizeof(OVPN_PEER_STATS) == 40, "OVPN_PEER_STATS");
_Static_assert(sizeof(OVPN_STATS) == 64, "OVPN_STATS");
_Static_assert(sizeof(OVPN_VERSION) == 12, "OVPN_VERSION");

#define AF_INET_ 2
#define AF_INET6_ 23
#define MAX_PENDING 64
#define MAX_QUEUED 64

static PDEVICE_OBJECT g_adapter, g_ver;
static KSPIN_LOCK g_lock;
static LONG g_open;
static int g_peer, g_key, g_setpeer, g_started, g_tcp_refuse;
static PIRP g_reads[MAX_PENDING];
static int g_nreads;
static UCHAR g_queue[MAX_QUEUED][1500];
static ULONG g_queue_len[MAX_QUEUED];
static int g_nqueue;
static OVPN_STATS g_stats;
static char g_journal[32768];
static ULONG g_jlen;
static LONG g_delay_ms; /* FAKE_SET_DELAY; 0: varied */

/* multipeer state */
static int g_mode, g_mp_started;
#define MAX_MP 16
typedef struct { int used; LONG id; int key; LONG64 rx, tx; } MP_PEER;
static MP_PEER g_mp[MAX_MP];
#define MAX_NOTIFY 16
static PIRP g_notify_irp; /* the one pending NOTIFY_EVENT */
static OVPN_NOTIFY_EVENT g_events[MAX_NOTIFY];
static int g_nevents;

static MP_PEER *mp_find(LONG id)
{
    for (int i = 0; i < MAX_MP; i++) if (g_mp[i].used && g_mp[i].id == id) return &g_mp[i];
    return NULL;
}
static int mp_count(void)
{
    int n = 0;
    for (int i = 0; i < MAX_MP; i++) n += g_mp[i].used;
    return n;
}
static int version_at_least(LONG major, LONG minor);
static ULONG g_rand = 12345;

/* Requests completed later by the worker thread. */
enum { KIND_WRITE = 1, KIND_TCP = 2 };
#define MAX_DELAYED 64
typedef struct { PIRP irp; int kind; LONGLONG due; ULONG len; UCHAR data[1500]; } DELAYED;
static DELAYED g_delayed[MAX_DELAYED];
static KEVENT g_wake;
static PFILE_OBJECT g_owner; /* the one file object that holds the adapter */
static LONG g_ver_major = 2, g_ver_minor = 7, g_ver_patch = 1; /* FAKE_SET_VERSION; reset by INJECT 4 */

/* Wine 8 does not fail CreateFile when IRP_MJ_CREATE fails (it completes the open before the driver
 * answers), so a refused open is also remembered: every later call on that file object fails with
 * STATUS_ACCESS_DENIED, which reaches the application as ERROR_ACCESS_DENIED as on Windows. */
static int foreign(PDEVICE_OBJECT dev, PIRP irp)
{
    return dev == g_adapter && IoGetCurrentIrpStackLocation(irp)->FileObject != g_owner;
}

static void jputs(const char *s)
{
    while (*s && g_jlen < sizeof(g_journal) - 1) g_journal[g_jlen++] = *s++;
    g_journal[g_jlen] = 0;
}

static void jnum(LONG64 v)
{
    char b[24];
    int i = 0, neg = v < 0;
    ULONG64 u = neg ? (ULONG64)(-v) : (ULONG64)v;
    do { b[i++] = (char)('0' + u % 10); u /= 10; } while (u);
    if (neg) b[i++] = '-';
    char o[25];
    int j = 0;
    while (i) o[j++] = b[--i];
    o[j] = 0;
    jputs(o);
}

static void jhex(const UCHAR *p, ULONG n)
{
    static const char h[] = "0123456789abcdef";
    char b[3] = {0};
    for (ULONG i = 0; i < n; i++) { b[0] = h[p[i] >> 4]; b[1] = h[p[i] & 15]; jputs(b); }
}

/* FNV-1a of key bytes: the journal never carries key material, tests compare fingerprints. */
static void jfnv(const UCHAR *p, ULONG n)
{
    ULONG h = 2166136261u;
    for (ULONG i = 0; i < n; i++) { h ^= p[i]; h *= 16777619u; }
    UCHAR b[4] = { (UCHAR)(h >> 24), (UCHAR)(h >> 16), (UCHAR)(h >> 8), (UCHAR)h };
    jhex(b, 4);
}

static void jaddr(const SADDR *a)
{
    if (a->a4.family == AF_INET_) {
        for (int i = 0; i < 4; i++) { if (i) jputs("."); jnum(a->a4.addr[i]); }
    } else {
        jputs("["); jhex(a->a6.addr, 16); jputs("]");
    }
    jputs(":");
    jnum((a->a4.port >> 8) | ((a->a4.port & 0xff) << 8));
}

static NTSTATUS complete(PIRP irp, NTSTATUS st, ULONG_PTR info)
{
    irp->IoStatus.Status = st;
    irp->IoStatus.Information = info;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
    return st;
}

static void NTAPI cancel_read(PDEVICE_OBJECT dev, PIRP irp)
{
    KIRQL irql;
    (void)dev;
    IoReleaseCancelSpinLock(irp->CancelIrql);
    KeAcquireSpinLock(&g_lock, &irql);
    for (int i = 0; i < g_nreads; i++) {
        if (g_reads[i] == irp) {
            g_reads[i] = g_reads[--g_nreads];
            break;
        }
    }
    KeReleaseSpinLock(&g_lock, irql);
    jputs("READ cancelled\n");
    complete(irp, STATUS_CANCELLED, 0);
}

/* Take the oldest pending read out of the list, or NULL. Caller completes it. */
static PIRP take_read(void)
{
    KIRQL irql;
    PIRP irp = NULL;
    KeAcquireSpinLock(&g_lock, &irql);
    while (g_nreads > 0 && !irp) {
        PIRP cand = g_reads[0];
        for (int i = 1; i < g_nreads; i++) g_reads[i - 1] = g_reads[i];
        g_nreads--;
        if (IoSetCancelRoutine(cand, NULL) != NULL) irp = cand; /* else: being cancelled */
    }
    KeReleaseSpinLock(&g_lock, irql);
    return irp;
}

static void deliver_control(const UCHAR *data, ULONG len)
{
    PIRP irp = take_read();
    if (!irp) {
        if (g_nqueue < MAX_QUEUED && len <= 1500) {
            RtlCopyMemory(g_queue[g_nqueue], data, len);
            g_queue_len[g_nqueue++] = len;
        } else {
            g_stats.LostInControlPackets++;
        }
        return;
    }
    PIO_STACK_LOCATION sl = IoGetCurrentIrpStackLocation(irp);
    ULONG cap = sl->Parameters.Read.Length;
    if (cap < len) {
        g_stats.LostInControlPackets++;
        complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
        return;
    }
    PUCHAR out = MmGetSystemAddressForMdlSafe(irp->MdlAddress, NormalPagePriority);
    RtlCopyMemory(out, data, len);
    g_stats.ReceivedControlPackets++;
    g_stats.TransportBytesReceived += len;
    complete(irp, STATUS_SUCCESS, len);
}

static LONGLONG now_100ns(void)
{
    LARGE_INTEGER t;
    KeQuerySystemTime(&t);
    return t.QuadPart;
}

static void NTAPI cancel_delayed(PDEVICE_OBJECT dev, PIRP irp)
{
    KIRQL irql;
    int kind = 0;
    (void)dev;
    IoReleaseCancelSpinLock(irp->CancelIrql);
    KeAcquireSpinLock(&g_lock, &irql);
    for (int i = 0; i < MAX_DELAYED; i++) {
        if (g_delayed[i].irp == irp) { kind = g_delayed[i].kind; g_delayed[i].irp = NULL; break; }
    }
    KeReleaseSpinLock(&g_lock, irql);
    /* a cancelled TCP NEW_PEER keeps its peer (g_peer stays 1): the caller must DEL_PEER */
    jputs(kind == KIND_TCP ? "NEW_PEER cancelled\n" : "WRITE cancelled\n");
    complete(irp, STATUS_CANCELLED, 0);
}

/* Pend `irp` for the worker thread; returns STATUS_PENDING (or completes it at once when the table is full). */
static NTSTATUS pend(PIRP irp, int kind, const UCHAR *data, ULONG len)
{
    KIRQL irql;
    LONG ms = g_delay_ms;
    if (ms <= 0) { g_rand = g_rand * 1103515245u + 12345u; ms = 1 + (LONG)((g_rand >> 16) % 40); }
    KeAcquireSpinLock(&g_lock, &irql);
    for (int i = 0; i < MAX_DELAYED; i++) {
        if (g_delayed[i].irp) continue;
        g_delayed[i].irp = irp;
        g_delayed[i].kind = kind;
        g_delayed[i].due = now_100ns() + (LONGLONG)ms * 10000;
        g_delayed[i].len = len;
        if (len) RtlCopyMemory(g_delayed[i].data, data, len);
        IoMarkIrpPending(irp);
        IoSetCancelRoutine(irp, cancel_delayed);
        KeReleaseSpinLock(&g_lock, irql);
        KeSetEvent(&g_wake, 0, FALSE);
        return STATUS_PENDING;
    }
    KeReleaseSpinLock(&g_lock, irql);
    return complete(irp, STATUS_INSUFFICIENT_RESOURCES, 0);
}

static void fail_reads(NTSTATUS st)
{
    PIRP irp;
    while ((irp = take_read()) != NULL) complete(irp, st, 0);
}

static void reset_state(void)
{
    g_peer = g_key = g_setpeer = g_started = 0;
    g_nqueue = 0;
    RtlZeroMemory(&g_stats, sizeof(g_stats));
    g_mode = g_mp_started = 0;
    RtlZeroMemory(g_mp, sizeof(g_mp));
    g_nevents = 0;
}

static int version_at_least(LONG major, LONG minor)
{
    return g_ver_major > major || (g_ver_major == major && g_ver_minor >= minor);
}

static void NTAPI cancel_notify(PDEVICE_OBJECT dev, PIRP irp)
{
    KIRQL irql;
    (void)dev;
    IoReleaseCancelSpinLock(irp->CancelIrql);
    KeAcquireSpinLock(&g_lock, &irql);
    if (g_notify_irp == irp) g_notify_irp = NULL;
    KeReleaseSpinLock(&g_lock, irql);
    jputs("NOTIFY_EVENT cancelled\n");
    complete(irp, STATUS_CANCELLED, 0);
}

/* Hand a notification to the pending NOTIFY_EVENT, or queue it. */
static void notify(const OVPN_NOTIFY_EVENT *e)
{
    KIRQL irql;
    PIRP irp;
    KeAcquireSpinLock(&g_lock, &irql);
    irp = g_notify_irp;
    if (irp && IoSetCancelRoutine(irp, NULL) != NULL) g_notify_irp = NULL;
    else irp = NULL;
    if (!irp && g_nevents < MAX_NOTIFY) g_events[g_nevents++] = *e;
    KeReleaseSpinLock(&g_lock, irql);
    if (irp) {
        RtlCopyMemory(irp->AssociatedIrp.SystemBuffer, e, sizeof(*e));
        jputs("NOTIFY_EVENT delivered\n");
        complete(irp, STATUS_SUCCESS, sizeof(*e));
    }
}

/* Finish one delayed request, from the worker thread. */
static void finish(DELAYED *d)
{
    PIRP irp = d->irp;
    if (d->kind == KIND_TCP) {
        if (g_tcp_refuse) {
            jputs("NEW_PEER tcp refused\n");
            g_peer = 0;
            complete(irp, STATUS_CONNECTION_REFUSED, 0);
        } else {
            jputs("NEW_PEER tcp connected\n");
            complete(irp, STATUS_SUCCESS, 0);
        }
        return;
    }
    /* the "socket send" completed: count it, and the peer answers with the same packet */
    jputs("WRITE sent\n");
    g_stats.SentControlPackets++;
    g_stats.TransportBytesSent += d->len;
    complete(irp, STATUS_SUCCESS, d->len);
    deliver_control(d->data, d->len);
}

static VOID NTAPI worker_thread(PVOID ctx)
{
    static DELAYED due;
    (void)ctx;
    for (;;) {
        LARGE_INTEGER timeout;
        timeout.QuadPart = -20000; /* 2 ms */
        KeWaitForSingleObject(&g_wake, Executive, KernelMode, FALSE, &timeout);
        for (;;) {
            KIRQL irql;
            int found = 0;
            KeAcquireSpinLock(&g_lock, &irql);
            LONGLONG t = now_100ns();
            for (int i = 0; i < MAX_DELAYED && !found; i++) {
                if (!g_delayed[i].irp || g_delayed[i].due > t) continue;
                if (IoSetCancelRoutine(g_delayed[i].irp, NULL) == NULL) continue; /* being cancelled */
                due = g_delayed[i];
                g_delayed[i].irp = NULL;
                found = 1;
            }
            KeReleaseSpinLock(&g_lock, irql);
            if (!found) break;
            finish(&due);
        }
    }
}

/* Complete every delayed request with STATUS_CANCELLED (handle close). */
static void cancel_all_delayed(void)
{
    for (;;) {
        KIRQL irql;
        PIRP irp = NULL;
        KeAcquireSpinLock(&g_lock, &irql);
        for (int i = 0; i < MAX_DELAYED && !irp; i++) {
            if (g_delayed[i].irp && IoSetCancelRoutine(g_delayed[i].irp, NULL) != NULL) {
                irp = g_delayed[i].irp;
                g_delayed[i].irp = NULL;
            }
        }
        KeReleaseSpinLock(&g_lock, irql);
        if (!irp) return;
        complete(irp, STATUS_CANCELLED, 0);
    }
}

#define IN_LEN sl->Parameters.DeviceIoControl.InputBufferLength
#define OUT_LEN sl->Parameters.DeviceIoControl.OutputBufferLength
#define BUF irp->AssociatedIrp.SystemBuffer

static NTSTATUS bad(PIRP irp, const char *what, NTSTATUS st)
{
    jputs("REJECT ");
    jputs(what);
    jputs("\n");
    return complete(irp, st, 0);
}

static NTSTATUS NTAPI dispatch_ioctl(PDEVICE_OBJECT dev, PIRP irp)
{
    PIO_STACK_LOCATION sl = IoGetCurrentIrpStackLocation(irp);
    ULONG code = sl->Parameters.DeviceIoControl.IoControlCode;

    if (code == FAKE_GET_JOURNAL) {
        ULONG n = g_jlen < OUT_LEN ? g_jlen : OUT_LEN;
        RtlCopyMemory(BUF, g_journal, n);
        return complete(irp, STATUS_SUCCESS, n);
    }
    if (code == FAKE_INJECT) {
        if (IN_LEN < 4) return complete(irp, STATUS_INVALID_PARAMETER, 0);
        ULONG what = *(ULONG *)BUF;
        if (what == 1) { jputs("INJECT control\n"); deliver_control((PUCHAR)BUF + 4, IN_LEN - 4); }
        else if (what == 2) { jputs("INJECT expire\n"); fail_reads(STATUS_CONNECTION_DISCONNECTED); }
        else if (what == 3) { jputs("INJECT tcp-abort\n"); fail_reads(STATUS_CONNECTION_ABORTED); }
        else if (what == 5 && IN_LEN >= 4 + sizeof(OVPN_NOTIFY_EVENT)) {
            OVPN_NOTIFY_EVENT e;
            RtlCopyMemory(&e, (PUCHAR)BUF + 4, sizeof(e));
            jputs("INJECT notify\n");
            if (e.Cmd == 0) { MP_PEER *p = mp_find(e.PeerId); if (p) p->used = 0; } /* the driver dropped it */
            notify(&e);
        }
        else if (what == 4) {
            reset_state(); g_jlen = 0; g_journal[0] = 0;
            g_ver_major = 2; g_ver_minor = 7; g_ver_patch = 1;
            g_delay_ms = 0; g_tcp_refuse = 0;
        }
        return complete(irp, STATUS_SUCCESS, 0);
    }
    if (code == FAKE_SET_VERSION) {
        if (IN_LEN < 12) return complete(irp, STATUS_INVALID_PARAMETER, 0);
        OVPN_VERSION *v = BUF;
        g_ver_major = v->Major; g_ver_minor = v->Minor; g_ver_patch = v->Patch;
        return complete(irp, STATUS_SUCCESS, 0);
    }
    if (code == FAKE_SET_DELAY) {
        if (IN_LEN < 4) return complete(irp, STATUS_INVALID_PARAMETER, 0);
        g_delay_ms = *(LONG *)BUF;
        return complete(irp, STATUS_SUCCESS, 0);
    }
    if (code == FAKE_SET_TCP) {
        if (IN_LEN < 4) return complete(irp, STATUS_INVALID_PARAMETER, 0);
        g_tcp_refuse = *(ULONG *)BUF != 0;
        return complete(irp, STATUS_SUCCESS, 0);
    }
    if (code == OVPN_IOCTL_GET_VERSION) {
        if (OUT_LEN < sizeof(OVPN_VERSION)) return bad(irp, "GET_VERSION output too small", STATUS_BUFFER_TOO_SMALL);
        OVPN_VERSION *v = BUF;
        v->Major = g_ver_major; v->Minor = g_ver_minor; v->Patch = g_ver_patch;
        jputs(dev == g_ver ? "GET_VERSION ver\n" : "GET_VERSION adapter\n");
        return complete(irp, STATUS_SUCCESS, sizeof(OVPN_VERSION));
    }
    if (dev != g_adapter) return bad(irp, "call on the version device", STATUS_INVALID_DEVICE_REQUEST);
    if (foreign(dev, irp)) return bad(irp, "call on a refused handle", STATUS_ACCESS_DENIED);

    if (code >= OVPN_IOCTL_SET_MODE && code <= OVPN_IOCTL_GET_PEER_STATS && !version_at_least(2, 4))
        return bad(irp, "multipeer IOCTL unknown to this driver version", STATUS_INVALID_DEVICE_REQUEST);
    if (g_mode == 1 && (code == OVPN_IOCTL_NEW_PEER || code == OVPN_IOCTL_START_VPN || code == OVPN_IOCTL_DEL_PEER ||
                        code == OVPN_IOCTL_SET_PEER || code == OVPN_IOCTL_SWAP_KEYS))
        return bad(irp, "peer-to-peer IOCTL in multipeer mode", STATUS_INVALID_DEVICE_REQUEST);
    switch (code) {
    case OVPN_IOCTL_SET_MODE: {
        if (IN_LEN != 4) return bad(irp, "SET_MODE size", STATUS_INVALID_PARAMETER);
        LONG m = *(LONG *)BUF;
        if (m != 0 && m != 1) return bad(irp, "SET_MODE value", STATUS_INVALID_PARAMETER);
        if (g_peer || g_mp_started) return bad(irp, "SET_MODE after start", STATUS_INVALID_DEVICE_STATE);
        g_mode = m;
        jputs("SET_MODE ");
        jnum(m);
        jputs("\n");
        return complete(irp, STATUS_SUCCESS, 0);
    }
    case OVPN_IOCTL_MP_START_VPN: {
        if (g_mode != 1) return bad(irp, "MP_START_VPN in p2p mode", STATUS_INVALID_DEVICE_REQUEST);
        if (IN_LEN != sizeof(OVPN_MP_START_VPN) || OUT_LEN < sizeof(OVPN_MP_START_VPN))
            return bad(irp, "MP_START_VPN size", STATUS_INVALID_PARAMETER);
        OVPN_MP_START_VPN *v = BUF;
        if (v->ListenAddress.a4.family != AF_INET_ && v->ListenAddress.a4.family != AF_INET6_)
            return bad(irp, "MP_START_VPN address family", STATUS_INVALID_PARAMETER);
        jputs("MP_START_VPN ");
        jaddr(&v->ListenAddress);
        jputs(" ipv6only=");
        jnum(v->IPv6Only);
        jputs("\n");
        g_mp_started = 1;
        if (v->ListenAddress.a4.port == 0) v->ListenAddress.a4.port = 0xaa04; /* 1194, as bound */
        return complete(irp, STATUS_SUCCESS, sizeof(OVPN_MP_START_VPN)); /* the bound address comes back */
    }
    case OVPN_IOCTL_MP_NEW_PEER: {
        if (!g_mp_started) return bad(irp, "MP_NEW_PEER before MP_START_VPN", STATUS_INVALID_DEVICE_REQUEST);
        if (IN_LEN != sizeof(OVPN_MP_NEW_PEER)) return bad(irp, "MP_NEW_PEER size", STATUS_INVALID_PARAMETER);
        OVPN_MP_NEW_PEER *p = BUF;
        if ((p->Remote.a4.family != AF_INET_ && p->Remote.a4.family != AF_INET6_) ||
            (p->Local.a4.family != AF_INET_ && p->Local.a4.family != AF_INET6_))
            return bad(irp, "MP_NEW_PEER address family", STATUS_INVALID_DEVICE_REQUEST);
        if (mp_find(p->PeerId)) return bad(irp, "MP_NEW_PEER duplicate peer id", STATUS_OBJECTID_EXISTS);
        MP_PEER *slot = NULL;
        for (int i = 0; i < MAX_MP && !slot; i++) if (!g_mp[i].used) slot = &g_mp[i];
        if (!slot) return bad(irp, "MP_NEW_PEER table full", STATUS_INSUFFICIENT_RESOURCES);
        RtlZeroMemory(slot, sizeof(*slot));
        slot->used = 1;
        slot->id = p->PeerId;
        jputs("MP_NEW_PEER id=");
        jnum(p->PeerId);
        jputs(" local=");
        jaddr(&p->Local);
        jputs(" remote=");
        jaddr(&p->Remote);
        jputs(" vpn4=");
        for (int i = 0; i < 4; i++) { if (i) jputs("."); jnum(p->VpnAddr4[i]); }
        jputs(" vpn6=");
        jhex(p->VpnAddr6, 16);
        jputs("\n");
        return complete(irp, STATUS_SUCCESS, 0);
    }
    case OVPN_IOCTL_MP_SET_PEER: {
        if (IN_LEN != sizeof(OVPN_MP_SET_PEER)) return bad(irp, "MP_SET_PEER size", STATUS_INVALID_PARAMETER);
        OVPN_MP_SET_PEER *s = BUF;
        if (!mp_find(s->PeerId)) return bad(irp, "MP_SET_PEER unknown peer", STATUS_INVALID_DEVICE_REQUEST);
        jputs("MP_SET_PEER id=");
        jnum(s->PeerId);
        jputs(" interval=");
        jnum(s->KeepaliveInterval);
        jputs(" timeout=");
        jnum(s->KeepaliveTimeout);
        jputs(" mss=");
        jnum(s->MSS);
        jputs("\n");
        return complete(irp, STATUS_SUCCESS, 0);
    }
    case OVPN_IOCTL_MP_DEL_PEER:
    case OVPN_IOCTL_MP_SWAP_KEYS: {
        int del = code == OVPN_IOCTL_MP_DEL_PEER;
        if (IN_LEN != 4) return bad(irp, del ? "MP_DEL_PEER size" : "MP_SWAP_KEYS size", STATUS_INVALID_PARAMETER);
        MP_PEER *p = mp_find(*(LONG *)BUF);
        if (!p) return bad(irp, del ? "MP_DEL_PEER unknown peer" : "MP_SWAP_KEYS unknown peer", STATUS_INVALID_DEVICE_REQUEST);
        if (!del && !p->key) return bad(irp, "MP_SWAP_KEYS without a key", STATUS_INVALID_DEVICE_STATE);
        jputs(del ? "MP_DEL_PEER id=" : "MP_SWAP_KEYS id=");
        jnum(p->id);
        jputs("\n");
        if (del) p->used = 0;
        return complete(irp, STATUS_SUCCESS, 0);
    }
    case OVPN_IOCTL_MP_ADD_IROUTE:
    case OVPN_IOCTL_MP_DEL_IROUTE: {
        int add = code == OVPN_IOCTL_MP_ADD_IROUTE;
        if (IN_LEN != sizeof(OVPN_MP_IROUTE)) return bad(irp, "MP_IROUTE size", STATUS_INVALID_PARAMETER);
        OVPN_MP_IROUTE *r = BUF;
        if (!mp_find(r->PeerId)) return bad(irp, "MP_IROUTE unknown peer", STATUS_INVALID_DEVICE_REQUEST);
        if (r->Netbits < 0 || r->Netbits > (r->IPv6 ? 128 : 32)) return bad(irp, "MP_IROUTE netbits", STATUS_INVALID_PARAMETER);
        jputs(add ? "MP_ADD_IROUTE id=" : "MP_DEL_IROUTE id=");
        jnum(r->PeerId);
        jputs(" addr=");
        jhex(r->Addr, r->IPv6 ? 16 : 4);
        jputs("/");
        jnum(r->Netbits);
        jputs(" ipv6=");
        jnum(r->IPv6);
        jputs("\n");
        return complete(irp, STATUS_SUCCESS, 0);
    }
    case OVPN_IOCTL_NOTIFY_EVENT: {
        if (g_mode != 1) return bad(irp, "NOTIFY_EVENT in p2p mode", STATUS_INVALID_DEVICE_REQUEST);
        if (OUT_LEN < sizeof(OVPN_NOTIFY_EVENT)) return bad(irp, "NOTIFY_EVENT output size", STATUS_BUFFER_TOO_SMALL);
        KIRQL irql;
        KeAcquireSpinLock(&g_lock, &irql);
        if (g_nevents > 0) {
            OVPN_NOTIFY_EVENT e = g_events[0];
            for (int i = 1; i < g_nevents; i++) g_events[i - 1] = g_events[i];
            g_nevents--;
            KeReleaseSpinLock(&g_lock, irql);
            RtlCopyMemory(BUF, &e, sizeof(e));
            jputs("NOTIFY_EVENT delivered\n");
            return complete(irp, STATUS_SUCCESS, sizeof(e));
        }
        if (g_notify_irp) {
            KeReleaseSpinLock(&g_lock, irql);
            return bad(irp, "NOTIFY_EVENT twice", STATUS_INVALID_DEVICE_STATE);
        }
        IoMarkIrpPending(irp);
        IoSetCancelRoutine(irp, cancel_notify);
        g_notify_irp = irp;
        KeReleaseSpinLock(&g_lock, irql);
        jputs("NOTIFY_EVENT pending\n");
        return STATUS_PENDING;
    }
    case OVPN_IOCTL_GET_PEER_STATS: {
        if (!version_at_least(2, 7)) return bad(irp, "GET_PEER_STATS unknown to this driver version", STATUS_INVALID_DEVICE_REQUEST);
        if (IN_LEN != 4) return bad(irp, "GET_PEER_STATS size", STATUS_INVALID_PARAMETER);
        LONG id = *(LONG *)BUF;
        ULONG need = (ULONG)(id == -1 ? mp_count() : (mp_find(id) ? 1 : 0)) * sizeof(OVPN_PEER_STATS);
        if (id != -1 && need == 0) return bad(irp, "GET_PEER_STATS unknown peer", STATUS_INVALID_DEVICE_REQUEST);
        jputs("GET_PEER_STATS id=");
        jnum(id);
        jputs(" need=");
        jnum(need);
        jputs(" given=");
        jnum(OUT_LEN);
        jputs("\n");
        if (OUT_LEN < need) {
            if (OUT_LEN < 4) return complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
            *(ULONG *)BUF = need; /* ERROR_MORE_DATA: the size to ask again with */
            return complete(irp, STATUS_BUFFER_OVERFLOW, 4);
        }
        OVPN_PEER_STATS *out = BUF;
        int n = 0;
        for (int i = 0; i < MAX_MP; i++) {
            if (!g_mp[i].used || (id != -1 && g_mp[i].id != id)) continue;
            RtlZeroMemory(&out[n], sizeof(out[n]));
            out[n].PeerId = g_mp[i].id;
            out[n].LinkRxBytes = 1000 + g_mp[i].id;
            out[n].LinkTxBytes = 2000 + g_mp[i].id;
            out[n].VpnRxBytes = 3000 + g_mp[i].id;
            out[n].VpnTxBytes = 4000 + g_mp[i].id;
            n++;
        }
        return complete(irp, STATUS_SUCCESS, n * sizeof(OVPN_PEER_STATS));
    }
    case OVPN_IOCTL_NEW_PEER: {
        if (IN_LEN != sizeof(OVPN_NEW_PEER)) return bad(irp, "NEW_PEER size", STATUS_INVALID_PARAMETER);
        if (g_peer) return bad(irp, "NEW_PEER twice", STATUS_INVALID_DEVICE_STATE);
        OVPN_NEW_PEER *p = BUF;
        if ((p->Local.a4.family != AF_INET_ && p->Local.a4.family != AF_INET6_) || p->Remote.a4.family != p->Local.a4.family)
            return bad(irp, "NEW_PEER address family", STATUS_INVALID_PARAMETER);
        if (p->Proto != 0 && p->Proto != 1) return bad(irp, "NEW_PEER proto", STATUS_INVALID_PARAMETER);
        if (p->Remote.a4.port == 0) return bad(irp, "NEW_PEER remote port 0", STATUS_INVALID_PARAMETER);
        jputs("NEW_PEER ");
        jputs(p->Proto ? "tcp " : "udp ");
        jputs(p->Local.a4.family == AF_INET_ ? "AF_INET " : "AF_INET6 ");
        jaddr(&p->Local);
        jputs(" -> ");
        jaddr(&p->Remote);
        jputs("\n");
        g_peer = 1; /* registered before the connect, as the real driver */
        if (p->Proto == 1) return pend(irp, KIND_TCP, NULL, 0);
        return complete(irp, STATUS_SUCCESS, 0);
    }
    case OVPN_IOCTL_NEW_KEY_V2:
    case OVPN_IOCTL_NEW_KEY: {
        int v2 = code == OVPN_IOCTL_NEW_KEY_V2;
        ULONG opts = 0;
        /* drivers before 2.4 do not know NEW_KEY_V2 */
        if (v2 && (g_ver_major < 2 || (g_ver_major == 2 && g_ver_minor < 4)))
            return bad(irp, "NEW_KEY_V2 unknown to this driver version", STATUS_INVALID_DEVICE_REQUEST);
        if (IN_LEN != (v2 ? sizeof(OVPN_CRYPTO_DATA_V2) : sizeof(OVPN_CRYPTO_DATA)))
            return bad(irp, v2 ? "NEW_KEY_V2 size" : "NEW_KEY size", STATUS_INVALID_PARAMETER);
        OVPN_CRYPTO_DATA *c = BUF;
        if (g_mode == 1) {
            if (!mp_find(c->PeerId)) return bad(irp, "NEW_KEY for an unknown peer", STATUS_INVALID_DEVICE_REQUEST);
        } else if (!g_peer) return bad(irp, "NEW_KEY before NEW_PEER", STATUS_INVALID_DEVICE_STATE);
        if (v2) {
            opts = ((OVPN_CRYPTO_DATA_V2 *)BUF)->CryptoOptions;
            if (opts & ~(ULONG)CRYPTO_OPTIONS_EPOCH) return bad(irp, "NEW_KEY_V2 unknown CryptoOptions bits", STATUS_INVALID_PARAMETER);
            if ((opts & CRYPTO_OPTIONS_EPOCH) && c->CipherAlg == 0) return bad(irp, "NEW_KEY_V2 epoch with cipher none", STATUS_INVALID_PARAMETER);
        }
        if (c->KeySlot != 0 && c->KeySlot != 1) return bad(irp, "NEW_KEY slot", STATUS_INVALID_PARAMETER);
        if (c->CipherAlg < 0 || c->CipherAlg > 2) return bad(irp, "NEW_KEY cipher", STATUS_INVALID_PARAMETER);
        if (c->KeyId > 7) return bad(irp, "NEW_KEY key id", STATUS_INVALID_PARAMETER);
        if (c->CipherAlg == 1 && ((c->Encrypt.KeyLen != 16 && c->Encrypt.KeyLen != 24 && c->Encrypt.KeyLen != 32) || c->Decrypt.KeyLen != c->Encrypt.KeyLen))
            return bad(irp, "NEW_KEY AES key length", STATUS_INVALID_PARAMETER);
        if (c->CipherAlg == 2 && (c->Encrypt.KeyLen != 32 || c->Decrypt.KeyLen != 32))
            return bad(irp, "NEW_KEY chacha key length", STATUS_INVALID_PARAMETER);
        jputs(v2 ? "NEW_KEY_V2 opts=" : "NEW_KEY slot=");
        if (v2) { jnum(opts); jputs(" slot="); }
        jnum(c->KeySlot);
        jputs(" alg=");
        jnum(c->CipherAlg);
        jputs(" keyid=");
        jnum(c->KeyId);
        jputs(" peerid=");
        jnum(c->PeerId);
        jputs(" enclen=");
        jnum(c->Encrypt.KeyLen);
        jputs(" declen=");
        jnum(c->Decrypt.KeyLen);
        /* epoch keys: Key carries the 32-byte epoch secret whatever KeyLen (the cipher's) says */
        jputs(" enc=");
        jfnv(c->Encrypt.Key, (opts & CRYPTO_OPTIONS_EPOCH) ? 32 : c->Encrypt.KeyLen);
        jputs(" dec=");
        jfnv(c->Decrypt.Key, (opts & CRYPTO_OPTIONS_EPOCH) ? 32 : c->Decrypt.KeyLen);
        jputs(" enctail=");
        jfnv(c->Encrypt.NonceTail, 8);
        jputs(" dectail=");
        jfnv(c->Decrypt.NonceTail, 8);
        jputs("\n");
        g_key = 1;
        if (g_mode == 1) mp_find(c->PeerId)->key = 1;
        return complete(irp, STATUS_SUCCESS, 0);
    }
    case OVPN_IOCTL_SWAP_KEYS:
        if (!g_key) return bad(irp, "SWAP_KEYS without a key", STATUS_INVALID_DEVICE_STATE);
        jputs("SWAP_KEYS\n");
        return complete(irp, STATUS_SUCCESS, 0);
    case OVPN_IOCTL_SET_PEER: {
        if (IN_LEN != sizeof(OVPN_SET_PEER)) return bad(irp, "SET_PEER size", STATUS_INVALID_PARAMETER);
        if (!g_peer) return bad(irp, "SET_PEER before NEW_PEER", STATUS_INVALID_DEVICE_STATE);
        OVPN_SET_PEER *s = BUF;
        if (s->KeepaliveInterval < -1 || s->KeepaliveTimeout < -1 || s->MSS < -1)
            return bad(irp, "SET_PEER values", STATUS_INVALID_PARAMETER);
        jputs("SET_PEER interval=");
        jnum(s->KeepaliveInterval);
        jputs(" timeout=");
        jnum(s->KeepaliveTimeout);
        jputs(" mss=");
        jnum(s->MSS);
        jputs("\n");
        g_setpeer = 1;
        return complete(irp, STATUS_SUCCESS, 0);
    }
    case OVPN_IOCTL_START_VPN:
        if (!g_peer || !g_key) return bad(irp, "START_VPN before NEW_PEER/NEW_KEY", STATUS_INVALID_DEVICE_STATE);
        jputs("START_VPN\n");
        g_started = 1;
        return complete(irp, STATUS_SUCCESS, 0);
    case OVPN_IOCTL_DEL_PEER:
        if (!g_peer) return bad(irp, "DEL_PEER without a peer", STATUS_INVALID_DEVICE_STATE);
        jputs("DEL_PEER\n");
        g_peer = g_key = g_setpeer = g_started = 0;
        g_nqueue = 0; /* control packets of the old session are flushed */
        /* as OvpnPeerDel: the pending reads complete with STATUS_CANCELLED */
        {
            PIRP r;
            while ((r = take_read()) != NULL) {
                jputs("READ ended by DEL_PEER\n");
                complete(r, STATUS_CANCELLED, 0);
            }
        }
        return complete(irp, STATUS_SUCCESS, 0);
    case OVPN_IOCTL_GET_STATS:
        if (OUT_LEN < sizeof(OVPN_STATS)) return bad(irp, "GET_STATS output too small", STATUS_BUFFER_TOO_SMALL);
        RtlCopyMemory(BUF, &g_stats, sizeof(OVPN_STATS));
        return complete(irp, STATUS_SUCCESS, sizeof(OVPN_STATS));
    }
    jputs("(code 0x");
    { UCHAR cb[4] = { (UCHAR)(code >> 24), (UCHAR)(code >> 16), (UCHAR)(code >> 8), (UCHAR)code }; jhex(cb, 4); }
    jputs(") ");
    return bad(irp, "unknown IOCTL", STATUS_INVALID_DEVICE_REQUEST);
}

static NTSTATUS NTAPI dispatch_read(PDEVICE_OBJECT dev, PIRP irp)
{
    KIRQL irql;
    if (dev != g_adapter) return complete(irp, STATUS_INVALID_DEVICE_REQUEST, 0);
    if (foreign(dev, irp)) return complete(irp, STATUS_ACCESS_DENIED, 0);
    PIO_STACK_LOCATION sl = IoGetCurrentIrpStackLocation(irp);
    if (g_nqueue > 0) {
        ULONG len = g_queue_len[0];
        if (sl->Parameters.Read.Length < len) return complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
        PUCHAR out = MmGetSystemAddressForMdlSafe(irp->MdlAddress, NormalPagePriority);
        RtlCopyMemory(out, g_queue[0], len);
        for (int i = 1; i < g_nqueue; i++) {
            RtlCopyMemory(g_queue[i - 1], g_queue[i], g_queue_len[i]);
            g_queue_len[i - 1] = g_queue_len[i];
        }
        g_nqueue--;
        g_stats.ReceivedControlPackets++;
        g_stats.TransportBytesReceived += len;
        return complete(irp, STATUS_SUCCESS, len);
    }
    KeAcquireSpinLock(&g_lock, &irql);
    if (g_nreads >= MAX_PENDING) {
        KeReleaseSpinLock(&g_lock, irql);
        return complete(irp, STATUS_INSUFFICIENT_RESOURCES, 0);
    }
    IoMarkIrpPending(irp);
    IoSetCancelRoutine(irp, cancel_read);
    g_reads[g_nreads++] = irp;
    KeReleaseSpinLock(&g_lock, irql);
    return STATUS_PENDING;
}

static NTSTATUS NTAPI dispatch_write(PDEVICE_OBJECT dev, PIRP irp)
{
    if (dev != g_adapter) return complete(irp, STATUS_INVALID_DEVICE_REQUEST, 0);
    if (foreign(dev, irp)) return complete(irp, STATUS_ACCESS_DENIED, 0);
    PIO_STACK_LOCATION sl = IoGetCurrentIrpStackLocation(irp);
    ULONG len = sl->Parameters.Write.Length;
    if (g_mode == 1) {
        /* multipeer: the packet comes after the peer's sockaddr (SOCKADDR_IN or SOCKADDR_IN6) */
        if (len < 2) return bad(irp, "MP WriteFile without a sockaddr", STATUS_INVALID_PARAMETER);
        PUCHAR w = MmGetSystemAddressForMdlSafe(irp->MdlAddress, NormalPagePriority);
        USHORT fam = *(USHORT *)w;
        ULONG skip = fam == AF_INET_ ? 16 : fam == AF_INET6_ ? 28 : 0;
        if (!skip || len <= skip) return bad(irp, "MP WriteFile sockaddr", STATUS_INVALID_PARAMETER);
        if (len - skip > 1500) return bad(irp, "WriteFile size", STATUS_INVALID_PARAMETER);
        jputs("WRITE MP to ");
        jaddr((const SADDR *)w);
        jputs(" ");
        jnum(len - skip);
        jputs(" op=");
        jnum(w[skip] >> 3);
        jputs("\n");
        return pend(irp, KIND_WRITE, w, len);
    }
    if (!g_peer) return bad(irp, "WriteFile without a peer", STATUS_INVALID_DEVICE_STATE);
    if (len == 0 || len > 1500) return bad(irp, "WriteFile size", STATUS_INVALID_PARAMETER);
    PUCHAR in = MmGetSystemAddressForMdlSafe(irp->MdlAddress, NormalPagePriority);
    jputs("WRITE ");
    jnum(len);
    jputs(" op=");
    jnum(in[0] >> 3);
    jputs("\n");
    /* pending until the "socket send" completes (worker thread), which also loops the packet back */
    return pend(irp, KIND_WRITE, in, len);
}

static NTSTATUS NTAPI dispatch_create(PDEVICE_OBJECT dev, PIRP irp)
{
    if (dev == g_adapter) {
        if (InterlockedCompareExchange(&g_open, 1, 0) != 0) {
            jputs("OPEN refused: in use\n");
            return complete(irp, STATUS_ACCESS_DENIED, 0);
        }
        g_owner = IoGetCurrentIrpStackLocation(irp)->FileObject;
        jputs("OPEN adapter\n");
    }
    return complete(irp, STATUS_SUCCESS, 0);
}

static NTSTATUS NTAPI dispatch_cleanup(PDEVICE_OBJECT dev, PIRP irp)
{
    if (dev == g_adapter && !foreign(dev, irp)) {
        fail_reads(STATUS_CANCELLED);
        cancel_all_delayed();
        {
            KIRQL irql;
            PIRP n;
            KeAcquireSpinLock(&g_lock, &irql);
            n = g_notify_irp;
            if (n && IoSetCancelRoutine(n, NULL) != NULL) g_notify_irp = NULL;
            else n = NULL;
            KeReleaseSpinLock(&g_lock, irql);
            if (n) complete(n, STATUS_CANCELLED, 0);
        }
    }
    return complete(irp, STATUS_SUCCESS, 0);
}

static NTSTATUS NTAPI dispatch_close(PDEVICE_OBJECT dev, PIRP irp)
{
    if (dev == g_adapter && !foreign(dev, irp)) {
        jputs("CLOSE adapter\n");
        reset_state();
        g_owner = NULL;
        InterlockedExchange(&g_open, 0);
    }
    return complete(irp, STATUS_SUCCESS, 0);
}

static VOID NTAPI unload(PDRIVER_OBJECT drv)
{
    UNICODE_STRING l1, l2;
    (void)drv;
    RtlInitUnicodeString(&l1, L"\\DosDevices\\ovpn-dco");
    RtlInitUnicodeString(&l2, L"\\DosDevices\\ovpn-dco-ver");
    IoDeleteSymbolicLink(&l1);
    IoDeleteSymbolicLink(&l2);
    if (g_adapter) IoDeleteDevice(g_adapter);
    if (g_ver) IoDeleteDevice(g_ver);
}

static NTSTATUS make(PDRIVER_OBJECT drv, const WCHAR *name, const WCHAR *link, PDEVICE_OBJECT *out)
{
    UNICODE_STRING n, l;
    NTSTATUS st;
    RtlInitUnicodeString(&n, name);
    RtlInitUnicodeString(&l, link);
    st = IoCreateDevice(drv, 0, &n, FILE_DEVICE_UNKNOWN, 0, FALSE, out);
    if (!NT_SUCCESS(st)) return st;
    (*out)->Flags |= DO_DIRECT_IO;
    (*out)->Flags &= ~DO_DEVICE_INITIALIZING;
    return IoCreateSymbolicLink(&l, &n);
}

NTSTATUS NTAPI DriverEntry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    NTSTATUS st;
    (void)reg;
    KeInitializeSpinLock(&g_lock);
    KeInitializeEvent(&g_wake, SynchronizationEvent, FALSE);
    {
        HANDLE th;
        if (NT_SUCCESS(PsCreateSystemThread(&th, THREAD_ALL_ACCESS, NULL, NULL, NULL, worker_thread, NULL))) ZwClose(th);
    }
    drv->MajorFunction[IRP_MJ_CREATE] = dispatch_create;
    drv->MajorFunction[IRP_MJ_CLOSE] = dispatch_close;
    drv->MajorFunction[IRP_MJ_CLEANUP] = dispatch_cleanup;
    drv->MajorFunction[IRP_MJ_DEVICE_CONTROL] = dispatch_ioctl;
    drv->MajorFunction[IRP_MJ_READ] = dispatch_read;
    drv->MajorFunction[IRP_MJ_WRITE] = dispatch_write;
    drv->DriverUnload = unload;
    st = make(drv, L"\\Device\\ovpn-dco", L"\\DosDevices\\ovpn-dco", &g_adapter);
    if (!NT_SUCCESS(st)) return st;
    return make(drv, L"\\Device\\ovpn-dco-ver", L"\\DosDevices\\ovpn-dco-ver", &g_ver);
}
