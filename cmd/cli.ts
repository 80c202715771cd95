/**
 * Command dispatch and the top-level error handler: every CliError (and every known device / key error)
 * becomes one line on stderr and its exit code; anything else is reported as an internal error, still in
 * one line.
 * @module
 */
import { CliError, EXIT, usage } from "./errors.ts";
import { genkey, GENKEY_HELP } from "./genkey.ts";
import { VERSION } from "./version.ts";
import { start, START_HELP } from "./start.ts";
import { isUpstreamForm, upstream } from "./upstream.ts";
import { demo, DEMO_HELP } from "./demo.ts";
import {
  events,
  EVENTS_HELP,
  key,
  KEY_HELP,
  peer,
  PEER_HELP,
  route,
  ROUTE_HELP,
  stats,
  STATS_HELP,
} from "./control_cmds.ts";
import { KeyFileError } from "../keys/keyfile.ts";
import { DeviceError } from "../driver/device.ts";
import { isBrokenPipe } from "./output.ts";

export const MAIN_HELP =
  `ovpn-dco-cli ${VERSION}: OpenVPN data-channel tunnels (ovpn-dco-win, WinTUN, Linux tun)

Usage:
  ovpn-dco-cli <tcp|udp> <i4|i6> <local-ip> <local-port> <remote-ip> <remote-port> <vpn-ip> <vpn-netmask> <vpn-gw> [<key-file> [<key-direction>]]
  ovpn-dco-cli <command> [options]

Commands:
  start     bring up a tunnel and run it in the foreground (--mode server: many peers)
  peer      new | set | del | get | list: the peer(s) of a running instance
  key       new | swap | del | epoch: data-channel keys of a running instance
  route     add | del: a subnet behind a peer (server mode)
  stats     statistics of a running instance (--json, --watch, --peer-id, --all)
  events    notifications of a running instance: peers deleted, expired, floated
  version   tool version (and driver version where a driver is present)
  genkey    write a fresh random data64.key
  demo      (Linux, root) a tunnel between two network namespaces, with pings and a throughput run

Run 'ovpn-dco-cli <command> --help' for a command's options and an example.
`;

type Command = { run: (args: string[]) => Promise<number>; help: string };

const COMMANDS: Record<string, Command> = {
  genkey: { run: genkey, help: GENKEY_HELP },
  start: { run: start, help: START_HELP },
  stats: { run: stats, help: STATS_HELP },
  peer: { run: peer, help: PEER_HELP },
  key: { run: key, help: KEY_HELP },
  route: { run: route, help: ROUTE_HELP },
  events: { run: events, help: EVENTS_HELP },
  demo: { run: demo, help: DEMO_HELP },
  version: {
    run: async (args) => {
      if (args.length) throw usage(`version takes no arguments; see 'ovpn-dco-cli --help'`);
      console.log(`ovpn-dco-cli ${VERSION}`);
      if (Deno.build.os === "windows") {
        const { readDriverVersion } = await import("../driver/dco.ts");
        const { driverFeatures } = await import("../driver/uapi.ts");
        const { findAdapters } = await import("../driver/adapters.ts");
        const v = await readDriverVersion().catch(() => null);
        console.log(
          v
            ? `ovpn-dco driver ${v.major}.${v.minor}.${v.patch} (${driverFeatures(v).join(", ")})`
            : "ovpn-dco driver: not installed",
        );
        for (const a of findAdapters()) console.log(`ovpn-dco adapter '${a.name}': ${a.path}`);
      } else if (Deno.build.os === "linux") {
        const { probeModule } = await import("../driver/linux/ovpn_kernel.ts");
        const m = await probeModule().catch((e) => ({ present: false as const, why: (e as Error).message }));
        console.log(
          m.present
            ? `Linux ovpn module: present (generic netlink family ${m.family.id}, version ${m.family.version}; --backend dco)`
            : m.why,
        );
      }
      return EXIT.OK;
    },
    help:
      "Usage: ovpn-dco-cli version\n\nPrint the tool's version and, on Windows, the ovpn-dco driver's; on Linux, whether the kernel's ovpn module is there.\n\nExample:\n  ovpn-dco-cli version\n",
  },
};

/** Register a command (the command modules call this). */
export function registerCommand(name: string, c: Command) {
  COMMANDS[name] = c;
}

/** Run the CLI; returns the exit code. Never throws. */
export async function runCli(args: string[]): Promise<number> {
  try {
    const [name, ...rest] = args;
    if (name === undefined || name === "--help" || name === "-h" || name === "help") {
      if (name === "help" && rest[0] && COMMANDS[rest[0]]) console.log(COMMANDS[rest[0]].help);
      else console.log(MAIN_HELP);
      return name === undefined ? EXIT.USAGE : EXIT.OK;
    }
    if (name === "--version" || name === "-V") return await COMMANDS.version.run([]);
    if (isUpstreamForm(args)) return await upstream(args);
    const cmd = COMMANDS[name];
    if (!cmd) {
      throw usage(`unknown command '${name}'; run 'ovpn-dco-cli --help' for the list of commands`);
    }
    if (rest.includes("--help") || rest.includes("-h")) {
      console.log(cmd.help);
      return EXIT.OK;
    }
    return await cmd.run(rest);
  } catch (e) {
    return reportError(e);
  }
}

/** Print one line for an error and return its exit code. */
export function reportError(e: unknown): number {
  if (e instanceof CliError) {
    console.error(`ovpn-dco-cli: ${e.message}`);
    return e.code;
  }
  if (e instanceof KeyFileError) {
    console.error(`ovpn-dco-cli: ${e.message}`);
    return EXIT.KEY;
  }
  if (e instanceof DeviceError) {
    console.error(`ovpn-dco-cli: ${e.message}`);
    const codes = {
      busy: EXIT.BUSY,
      privilege: EXIT.PRIVILEGE,
      missing: EXIT.DRIVER,
      state: EXIT.USAGE,
      io: EXIT.FAILURE,
      timeout: EXIT.PEER,
    };
    return codes[e.kind];
  }
  if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable) {
    console.error(
      `ovpn-dco-cli: permission denied: ${
        (e as Error).message.split("\n")[0]
      }; run with the needed privileges`,
    );
    return EXIT.PRIVILEGE;
  }
  if (isBrokenPipe(e)) return EXIT.OK; // whoever read our output stopped reading (`stats | head`)
  const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
  console.error(`ovpn-dco-cli: internal error: ${msg}; please report it`);
  return EXIT.FAILURE;
}
