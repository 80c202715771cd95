/**
 * Provider choice: the fastest provider that can do a cipher here, or the one the user named.
 *
 * @example
 * ```ts
 * import { createAead } from "./providers.ts";
 * import { cipherByName } from "./aead.ts";
 * const aead = createAead(cipherByName("AES-256-GCM")!, new Uint8Array(32)); // libcrypto where present
 * aead.close();
 * ```
 * @module
 */
import type { Aead, AeadProvider, CipherInfo } from "./aead.ts";
import { libcryptoProvider } from "./libcrypto.ts";
import { nodeProvider } from "./node.ts";
import { cngProvider } from "./cng.ts";
import { portableProvider } from "./portable.ts";

/** Names accepted by `--crypto`. */
export const PROVIDER_NAMES = ["auto", "libcrypto", "cng", "node", "portable"] as const;
export type ProviderName = typeof PROVIDER_NAMES[number];

/**
 * Every provider that `auto` may choose here, fastest first. CNG (Windows) is left out of `auto` until it is
 * verified on real Windows: under Wine its AES-GCM does not check tags for 128-bit keys and lacks 192-bit
 * keys, so only `--crypto cng` selects it.
 */
export function availableProviders(): AeadProvider[] {
  const list: AeadProvider[] = [];
  const lib = libcryptoProvider();
  if (lib) list.push(lib);
  list.push(nodeProvider, portableProvider);
  return list;
}

/**
 * The provider for `cipher`: `auto` takes the first that supports it; a named provider must exist and
 * support the cipher, or this throws an error that says what to use instead.
 */
export function pickProvider(cipher: CipherInfo, want: ProviderName = "auto"): AeadProvider {
  const list = availableProviders();
  if (want === "auto") {
    const p = list.find((x) => x.supports(cipher));
    if (p) return p;
    throw new Error(`no crypto provider supports ${cipher.name}`);
  }
  const p = want === "cng" ? cngProvider() : list.find((x) => x.name === want);
  if (!p) throw new Error(`crypto provider '${want}' is not available here; use --crypto auto`);
  if (!p.supports(cipher)) {
    throw new Error(`crypto provider '${want}' cannot do ${cipher.name}; use --crypto auto`);
  }
  return p;
}

/** Key an AEAD with the chosen provider. */
export function createAead(cipher: CipherInfo, key: Uint8Array, want: ProviderName = "auto"): Aead {
  return pickProvider(cipher, want).create(cipher, key);
}

/** Why `want` cannot do `cipher` here (null: it can), for one clear line before anything is created. */
export function providerProblem(cipher: CipherInfo, want: ProviderName = "auto"): string | null {
  if (cipher.keyLen === 0) return null; // NONE needs no provider
  try {
    pickProvider(cipher, want);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}
