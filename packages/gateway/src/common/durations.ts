/** Durations in config: "500ms", "30s", "15m", "2h", "7d", or a combination like "1h30m". */
const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const pattern = /^(?:(\d+)(ms|s|m|h|d))+$/;
const part = /(\d+)(ms|s|m|h|d)/g;

export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!pattern.test(trimmed)) return undefined;
  let total = 0;
  for (const match of trimmed.matchAll(part)) total += Number(match[1]) * (unitMs[match[2]!] ?? 0);
  return total;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const units: [string, number][] = [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ];
  let rest = Math.floor(ms / 1000) * 1000;
  let out = "";
  for (const [unit, size] of units) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out;
}
