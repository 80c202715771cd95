/**
 * Raw symbols for the Windows control channel: named pipes (kernel32, and ntdll's NtFsControlFile so that
 * "pending" is learned from the NTSTATUS), and the security calls that build and check owner-only DACLs
 * (advapi32). No logic here.
 * @module
 */

export const PIPE_K32_SYMBOLS = {
  // (lpName, dwOpenMode, dwPipeMode, nMaxInstances, nOutBufferSize, nInBufferSize, nDefaultTimeOut, lpSecurityAttributes)
  CreateNamedPipeW: {
    parameters: ["buffer", "u32", "u32", "u32", "u32", "u32", "u32", "buffer"],
    result: "pointer",
  },
  DisconnectNamedPipe: { parameters: ["pointer"], result: "i32" },
  GetCurrentProcess: { parameters: [], result: "pointer" },
  LocalFree: { parameters: ["pointer"], result: "pointer" },
  CreateDirectoryW: { parameters: ["buffer", "buffer"], result: "i32" },
  SetConsoleCtrlHandler: { parameters: ["function", "i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

export const PIPE_NTDLL_SYMBOLS = {
  // (FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, FsControlCode, In, InLen, Out, OutLen)
  NtFsControlFile: {
    parameters: [
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "buffer",
      "u32",
      "pointer",
      "u32",
      "pointer",
      "u32",
    ],
    result: "u32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

export const SEC_ADVAPI32_SYMBOLS = {
  OpenProcessToken: { parameters: ["pointer", "u32", "buffer"], result: "i32" },
  GetTokenInformation: { parameters: ["pointer", "u32", "buffer", "u32", "buffer"], result: "i32" },
  ConvertSidToStringSidW: { parameters: ["pointer", "buffer"], result: "i32" },
  ConvertStringSecurityDescriptorToSecurityDescriptorW: {
    parameters: ["buffer", "u32", "buffer", "pointer"],
    result: "i32",
  },
  ConvertSecurityDescriptorToStringSecurityDescriptorW: {
    parameters: ["pointer", "u32", "u32", "buffer", "pointer"],
    result: "i32",
  },
  // (handle, ObjectType, SecurityInfo, ppsidOwner, ppsidGroup, ppDacl, ppSacl, ppSecurityDescriptor)
  GetSecurityInfo: {
    parameters: ["pointer", "u32", "u32", "pointer", "pointer", "pointer", "pointer", "buffer"],
    result: "u32",
  },
  // (pObjectName, ObjectType, SecurityInfo, ppsidOwner, ppsidGroup, ppDacl, ppSacl, ppSecurityDescriptor)
  GetNamedSecurityInfoW: {
    parameters: ["buffer", "u32", "u32", "pointer", "pointer", "pointer", "pointer", "buffer"],
    result: "u32",
  },
  SetFileSecurityW: { parameters: ["buffer", "u32", "pointer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

export const PIPE_ACCESS_DUPLEX = 0x3;
export const FILE_FLAG_FIRST_PIPE_INSTANCE = 0x80000;
export const PIPE_TYPE_BYTE = 0;
export const PIPE_REJECT_REMOTE_CLIENTS = 0x8;
export const FSCTL_PIPE_LISTEN = 0x110008;
export const TOKEN_QUERY = 0x8;
export const TOKEN_USER = 1;
export const TOKEN_OWNER = 4;
export const SDDL_REVISION_1 = 1;
export const SE_FILE_OBJECT = 1;
export const SE_KERNEL_OBJECT = 6;
export const OWNER_SECURITY_INFORMATION = 0x1;
export const DACL_SECURITY_INFORMATION = 0x4;
export const PROTECTED_DACL_SECURITY_INFORMATION = 0x80000000;
/** NTSTATUS of a listen that found its client already connected. */
export const STATUS_PIPE_CONNECTED = 0xc00000b2;
export const STATUS_OBJECT_NAME_NOT_FOUND = 0xc0000034;
export const STATUS_PIPE_NOT_AVAILABLE = 0xc00000ac;
export const STATUS_INSTANCE_NOT_AVAILABLE = 0xc00000ab;
export const STATUS_PIPE_BUSY = 0xc00000ae;
export const STATUS_ACCESS_DENIED = 0xc0000022;

/** Console control events that end the process when the handler returns. */
export const CTRL_CLOSE_EVENT = 2;
export const CTRL_LOGOFF_EVENT = 5;
export const CTRL_SHUTDOWN_EVENT = 6;
