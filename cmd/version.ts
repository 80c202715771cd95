/**
 * The tool's version (one place), and `version`.
 * @module
 */

/** The tool's version. */
export const VERSION = "0.1.0";
