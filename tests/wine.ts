/**
 * Shared by the Wine suites: running commands whose helpers outlive them, and the environment that
 * tests/windows/setup.sh builds (WINEPREFIX, DENO_WIN, ...).
 * @module
 */

const repo = new URL("..", import.meta.url).pathname;

/**
 * Run a command with its output going to files, not pipes: wine starts long-lived helpers (wineserver,
 * services, the driver host) that inherit its stdio, and a pipe would never reach end-of-file.
 */
export async function runToFiles(cmd: string, args: string[], env: Record<string, string> = {}) {
  const dir = await Deno.makeTempDir();
  try {
    const st = await new Deno.Command("bash", {
      args: ["-c", `"$0" "$@" >"${dir}/out" 2>"${dir}/err" </dev/null`, cmd, ...args],
      cwd: repo,
      env,
    }).output();
    return {
      code: st.code,
      stdout: await Deno.readTextFile(`${dir}/out`),
      stderr: await Deno.readTextFile(`${dir}/err`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Build (once) and describe the Wine environment: the KEY=VALUE lines setup.sh prints. */
export async function wineEnv(): Promise<Record<string, string>> {
  const setup = await runToFiles("bash", ["tests/windows/setup.sh"]);
  if (setup.code !== 0) throw new Error(`tests/windows/setup.sh failed:\n${setup.stderr}`);
  const env: Record<string, string> = {};
  for (const line of setup.stdout.trim().split("\n")) {
    const i = line.indexOf("=");
    env[line.slice(0, i)] = line.slice(i + 1);
  }
  return env;
}
