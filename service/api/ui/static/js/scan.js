/* Scan page: a gap histogram per skill, from the report's gap_histogram (log-spaced bins). */
"use strict";
(function () {
  const scan = SM.data("scan-data");
  const parent = document.getElementById("gap-charts");
  if (!scan || !scan.report || !parent) return;
  Object.entries(scan.report.skills).forEach(([sid, f], k) => {
    const h = f.gap_histogram;
    if (!h || !h.counts.length) {
      parent.appendChild(SM.el("p", { class: "muted" }, `${f.name || sid}: fewer than two instances, no gaps.`));
      return;
    }
    const idx = h.counts.map((_, i) => i);
    const label = (i) => (i >= 0 && i < h.counts.length ? `${SM.fmt(h.edges[i])}–${SM.fmt(h.edges[i + 1])}` : "");
    SM.chart(parent, `${f.name || sid}: gaps in tokens${h.zeros ? ` (${h.zeros} of 0 not shown)` : ""}`, {
      scales: { x: { time: false, range: [-0.6, h.counts.length - 0.4] } },
      axes: [
        { label: "gap (tokens, log bins)", values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? SM.fmt(h.edges[t]) : "")) },
        { label: "gaps" },
      ],
      series: [
        { label: "bin", value: (u, i) => label(i) },
        { label: "gaps", stroke: SM.PALETTE[k % 8], fill: SM.PALETTE[k % 8] + "88", paths: uPlot.paths.bars({ size: [0.9, 60] }), points: { show: false } },
      ],
    }, [idx, h.counts]);
  });
})();
