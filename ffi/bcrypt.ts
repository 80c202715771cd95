/**
 * Raw symbols of Windows CNG (bcrypt.dll) for AEAD, and the BCRYPT_AUTHENTICATED_CIPHER_MODE_INFO layout
 * (x64). No logic here.
 * @module
 */

export const BCRYPT_SYMBOLS = {
  BCryptOpenAlgorithmProvider: { parameters: ["buffer", "buffer", "pointer", "u32"], result: "u32" },
  BCryptCloseAlgorithmProvider: { parameters: ["pointer", "u32"], result: "u32" },
  BCryptSetProperty: { parameters: ["pointer", "buffer", "buffer", "u32", "u32"], result: "u32" },
  BCryptGenerateSymmetricKey: {
    parameters: ["pointer", "buffer", "pointer", "u32", "buffer", "u32", "u32"],
    result: "u32",
  },
  BCryptDestroyKey: { parameters: ["pointer"], result: "u32" },
  BCryptEncrypt: {
    parameters: ["pointer", "buffer", "u32", "buffer", "pointer", "u32", "buffer", "u32", "buffer", "u32"],
    result: "u32",
  },
  BCryptDecrypt: {
    parameters: ["pointer", "buffer", "u32", "buffer", "pointer", "u32", "buffer", "u32", "buffer", "u32"],
    result: "u32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

export type Bcrypt = Deno.DynamicLibrary<typeof BCRYPT_SYMBOLS>["symbols"];

/** sizeof(BCRYPT_AUTHENTICATED_CIPHER_MODE_INFO) on x64, and its field offsets. */
export const AUTH_INFO = {
  size: 88,
  cbSize: 0,
  dwInfoVersion: 4,
  pbNonce: 8,
  cbNonce: 16,
  pbAuthData: 24,
  cbAuthData: 32,
  pbTag: 40,
  cbTag: 48,
} as const;

export const STATUS_AUTH_TAG_MISMATCH = 0xc000a002;
