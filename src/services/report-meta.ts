/**
 * What every report a support team may attach carries about where and how it was made, in one
 * shape for all of them (`meta`: echo-test, call, record, sweep, netcheck). Built by the base
 * command's reportMeta(); documented once in docs/json-reports.md ("meta"), and in netcheck's
 * JSON Schema as `$defs/reportMeta`.
 */
export interface ReportMeta {
  schemaVersion: number;
  wzpVersion: string;
  generatedAt: string;
  /** osRelease: the kernel or OS release (os.release()). */
  host: { hostname: string; platform: string; osRelease: string; arch: string; node: string };
  /** The flags and arguments the command ran with. */
  flags: Record<string, unknown>;
}
