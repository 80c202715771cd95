/*
 * A recording netsh.exe for the Wine prefix (Wine's own netsh is a stub that does nothing and returns 0).
 * It appends each command line (arguments after the program name, space-joined, UTF-8) to the file named
 * by FAKE_NETSH_LOG, and answers the few commands this tool uses as Windows' netsh does, failing where it
 * fails:
 *   interface ipv4 set address name=<if> source=static address=<ip> mask=<mask> [store=active|persistent]
 *   interface ipv6 set address interface=<if> address=<ip6>/<len> [store=...]
 *   interface ipv4|ipv6 set subinterface <if> mtu=<n> [store=...]
 * <if> must be an interface index listed in FAKE_NETSH_IFINDEX (default "1"); anything else, "Element not
 * found." IPv6 commands fail with "Element not found." when FAKE_NETSH_NO_IPV6=1 (IPv6 unbound from the
 * adapter); an IPv6 MTU below 1280 is "The parameter is incorrect."; FAKE_NETSH_FAIL_MTU4=1 makes the IPv4
 * MTU fail with a German message written in the OEM code page (to check decoding). Success prints "Ok.".
 */
#include <windows.h>
#include <shellapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int env_on(const char *name)
{
    char b[8];
    DWORD n = GetEnvironmentVariableA(name, b, sizeof(b));
    return n > 0 && n < sizeof(b) && b[0] == '1';
}

static int known_if(const char *v)
{
    char list[256] = "1";
    GetEnvironmentVariableA("FAKE_NETSH_IFINDEX", list, sizeof(list));
    for (char *t = strtok(list, ","); t; t = strtok(NULL, ",")) if (strcmp(t, v) == 0) return 1;
    return 0;
}

/* value of key=VALUE among argv[from..], or NULL */
static const char *kv(int argc, char **argv, int from, const char *key)
{
    size_t n = strlen(key);
    for (int i = from; i < argc; i++) if (_strnicmp(argv[i], key, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
    return NULL;
}

static int out(const char *s, int rc)
{
    DWORD w;
    WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), s, (DWORD)strlen(s), &w, NULL);
    return rc;
}

int main(void)
{
    int wargc;
    WCHAR **wargv = CommandLineToArgvW(GetCommandLineW(), &wargc);
    char **argv = calloc(wargc + 1, sizeof(char *));
    for (int i = 0; i < wargc; i++) {
        int n = WideCharToMultiByte(CP_UTF8, 0, wargv[i], -1, NULL, 0, NULL, NULL);
        argv[i] = malloc(n);
        WideCharToMultiByte(CP_UTF8, 0, wargv[i], -1, argv[i], n, NULL, NULL);
    }
    int argc = wargc;
    char logpath[MAX_PATH];
    if (GetEnvironmentVariableA("FAKE_NETSH_LOG", logpath, sizeof(logpath))) {
        FILE *f = fopen(logpath, "ab");
        if (f) {
            for (int i = 1; i < argc; i++) fprintf(f, "%s%s", i > 1 ? " " : "", argv[i]);
            fputs("\n", f);
            fclose(f);
        }
    }
    const char *notfound = "\r\nElement not found.\r\n\r\n";
    if (argc < 5 || _stricmp(argv[1], "interface") != 0 || _stricmp(argv[3], "set") != 0)
        return out("The following command was not found: (fake netsh)\r\n", 1);
    int v6 = _stricmp(argv[2], "ipv6") == 0;
    if (!v6 && _stricmp(argv[2], "ipv4") != 0 && _stricmp(argv[2], "ip") != 0)
        return out("The following command was not found: (fake netsh)\r\n", 1);
    const char *store = kv(argc, argv, 5, "store");
    if (store && _stricmp(store, "active") != 0 && _stricmp(store, "persistent") != 0)
        return out("The parameter is incorrect.\r\n\r\n", 1);
    if (v6 && env_on("FAKE_NETSH_NO_IPV6")) return out(notfound, 1);
    if (_stricmp(argv[4], "address") == 0) {
        const char *ifv = kv(argc, argv, 5, v6 ? "interface" : "name");
        if (!ifv || !known_if(ifv)) return out(notfound, 1);
        if (!kv(argc, argv, 5, "address")) return out("The parameter is incorrect.\r\n\r\n", 1);
        if (!v6 && (!kv(argc, argv, 5, "mask") || !kv(argc, argv, 5, "source"))) return out("The parameter is incorrect.\r\n\r\n", 1);
        return out("Ok.\r\n\r\n", 0);
    }
    if (_stricmp(argv[4], "subinterface") == 0) {
        if (argc < 7 || !known_if(argv[5])) return out(notfound, 1);
        const char *mtu = kv(argc, argv, 6, "mtu");
        if (!mtu) return out("The parameter is incorrect.\r\n\r\n", 1);
        if (v6 && atoi(mtu) < 1280) return out("The parameter is incorrect.\r\n\r\n", 1);
        /* "Ungültiger Parameter." with u-umlaut as OEM (cp437/850) byte 0x81 */
        if (!v6 && env_on("FAKE_NETSH_FAIL_MTU4")) return out("Ung\x81ltiger Parameter.\r\n", 1);
        return out("Ok.\r\n\r\n", 0);
    }
    return out("The following command was not found: (fake netsh)\r\n", 1);
}
