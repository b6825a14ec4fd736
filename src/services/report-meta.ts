/** What every report a support team may attach carries about where and how it was made. */
export interface ReportMeta {
  schemaVersion: number;
  wzpVersion: string;
  generatedAt: string;
  host: { hostname: string; platform: string; arch: string; node: string };
  /** The flags and arguments the command ran with. */
  flags: Record<string, unknown>;
}
