/**
 * A small SVG writer for the README's charts: grouped horizontal bars, one group per
 * encoding (or figure), one bar per client, the value printed at the bar's end. No
 * dependencies, no network: the bench writes the files itself.
 */

export interface Bar {
  readonly label: string
  /** Undefined: drawn as "n/a" (not supported, or not applicable). */
  readonly value: number | undefined
}

export interface Group {
  readonly label: string
  readonly bars: ReadonlyArray<Bar>
}

export interface BarChart {
  readonly title: string
  /** Printed after each value, e.g. "events/s". */
  readonly unit: string
  readonly groups: ReadonlyArray<Group>
  /** A vertical reference line per group (e.g. a target), with its label. */
  readonly marks?: ReadonlyArray<{ readonly group: string; readonly value: number; readonly label: string }>
  readonly digits?: number
}

const palette: Record<string, string> = {
  floor: "#9aa0a6",
  "@discordjs/ws": "#5865f2",
  vigil: "#e8710a",
}
const fallback = ["#34a853", "#a142f4", "#12b5cb"]

const escapeXml = (text: string) =>
  text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;")

const format = (value: number, digits: number) =>
  value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })

export const barChart = (chart: BarChart): string => {
  const digits = chart.digits ?? 0
  const labelWidth = 220
  const plotWidth = 460
  const valueWidth = 150
  const barHeight = 18
  const gap = 4
  const groupGap = 14
  const top = 40
  const width = labelWidth + plotWidth + valueWidth
  const values = chart.groups.flatMap((g) => g.bars.map((b) => b.value ?? 0))
  const marks = chart.marks ?? []
  const max = Math.max(1e-9, ...values, ...marks.map((m) => m.value)) * 1.02
  const x = (value: number) => labelWidth + (value / max) * plotWidth
  const parts: Array<string> = []
  let y = top
  for (const group of chart.groups) {
    parts.push(`<text x="8" y="${y + 12}" font-weight="bold" font-size="13">${escapeXml(group.label)}</text>`)
    y += 20
    const groupTop = y
    group.bars.forEach((bar, i) => {
      const color = palette[bar.label] ?? fallback[i % fallback.length]
      parts.push(`<text x="24" y="${y + 13}" font-size="12">${escapeXml(bar.label)}</text>`)
      if (bar.value === undefined) {
        parts.push(`<text x="${labelWidth + 4}" y="${y + 13}" font-size="12" fill="#777">n/a</text>`)
      } else {
        const w = Math.max(1, x(bar.value) - labelWidth)
        parts.push(
          `<rect x="${labelWidth}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" fill="${color}"/>`,
          `<text x="${(labelWidth + w + 6).toFixed(1)}" y="${y + 13}" font-size="12">${format(bar.value, digits)} ${escapeXml(chart.unit)}</text>`,
        )
      }
      y += barHeight + gap
    })
    for (const mark of marks.filter((m) => m.group === group.label)) {
      const mx = x(mark.value).toFixed(1)
      parts.push(
        `<line x1="${mx}" y1="${groupTop - 4}" x2="${mx}" y2="${y}" stroke="#d93025" stroke-width="1.5" stroke-dasharray="4 3"/>`,
        `<text x="${mx}" y="${groupTop - 6}" font-size="11" fill="#d93025" text-anchor="middle">${escapeXml(mark.label)}</text>`,
      )
    }
    y += groupGap
  }
  const height = y + 8
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">`,
    `<title>${escapeXml(chart.title)}</title>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="8" y="22" font-size="15" font-weight="bold">${escapeXml(chart.title)}</text>`,
    ...parts,
    "</svg>",
    "",
  ].join("\n")
}
