/**
 * Raw symbol table of OpenSSL's libcrypto (EVP AEAD subset) for `Deno.dlopen`. No logic here.
 * @module
 */

/** The EVP functions the libcrypto AEAD provider calls. */
export const LIBCRYPTO_SYMBOLS = {
  EVP_CIPHER_CTX_new: { parameters: [], result: "pointer" },
  EVP_CIPHER_CTX_free: { parameters: ["pointer"], result: "void" },
  EVP_aes_128_gcm: { parameters: [], result: "pointer" },
  EVP_aes_192_gcm: { parameters: [], result: "pointer" },
  EVP_aes_256_gcm: { parameters: [], result: "pointer" },
  EVP_chacha20_poly1305: { parameters: [], result: "pointer" },
  // int EVP_CipherInit_ex(ctx, const EVP_CIPHER*, ENGINE*, const uchar* key, const uchar* iv, int enc)
  EVP_CipherInit_ex: {
    parameters: ["pointer", "pointer", "pointer", "buffer", "buffer", "i32"],
    result: "i32",
  },
  // int EVP_CipherInit_ex2(ctx, const EVP_CIPHER*, const uchar* key, const uchar* iv, int enc,
  //                        const OSSL_PARAM params[]) — OpenSSL 3.0 and later
  EVP_CipherInit_ex2: {
    parameters: ["pointer", "pointer", "pointer", "buffer", "i32", "buffer"],
    result: "i32",
    optional: true,
  },
  // int EVP_CipherUpdate(ctx, uchar* out, int* outl, const uchar* in, int inl)
  EVP_CipherUpdate: { parameters: ["pointer", "buffer", "buffer", "buffer", "i32"], result: "i32" },
  // int EVP_CipherFinal_ex(ctx, uchar* out, int* outl)
  EVP_CipherFinal_ex: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  // int EVP_CIPHER_CTX_ctrl(ctx, int type, int arg, void* ptr)
  EVP_CIPHER_CTX_ctrl: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** EVP_CTRL_AEAD_GET_TAG */
export const EVP_CTRL_AEAD_GET_TAG = 0x10;
/** EVP_CTRL_AEAD_SET_TAG */
export const EVP_CTRL_AEAD_SET_TAG = 0x11;

/** OSSL_PARAM's size on a 64-bit platform: key pointer, data type (u32, padded), data pointer, size, return size. */
export const OSSL_PARAM_SIZE = 40;
/** OSSL_PARAM_OCTET_STRING */
export const OSSL_PARAM_OCTET_STRING = 5;
/** The byte offset of each OSSL_PARAM field. */
export const OSSL_PARAM_FIELD = { key: 0, dataType: 8, data: 16, dataSize: 24, returnSize: 32 } as const;

/** Library names tried in order, per platform. */
export function libcryptoCandidates(): string[] {
  switch (Deno.build.os) {
    case "windows":
      return ["libcrypto-3-x64.dll", "libcrypto-3.dll"];
    case "darwin":
      return ["libcrypto.3.dylib", "/opt/homebrew/lib/libcrypto.3.dylib", "/usr/local/lib/libcrypto.3.dylib"];
    default:
      return ["libcrypto.so.3", "libcrypto.so"];
  }
}

/** An open libcrypto. */
export type Libcrypto = Deno.DynamicLibrary<typeof LIBCRYPTO_SYMBOLS>;

let cached: Libcrypto | null | undefined;

/** Open libcrypto once; null when no candidate loads (or FFI is not permitted). */
export function openLibcrypto(): Libcrypto | null {
  if (cached !== undefined) return cached;
  cached = null;
  for (const name of libcryptoCandidates()) {
    try {
      cached = Deno.dlopen(name, LIBCRYPTO_SYMBOLS);
      break;
    } catch {
      // try the next name
    }
  }
  return cached;
}
