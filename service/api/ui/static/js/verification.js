/* Verification page: P(retained) with intervals per arm and size, final readouts per seed
   (a strip plot), and readouts over training per seed and arm, from the API's report. */
"use strict";
(function () {
  const ver = SM.data("verification-data");
  if (!ver || !ver.report) return;
  const report = ver.report;
  const arms = Object.keys(report.arms || ver.arms);
  const color = (arm) => SM.PALETTE[arms.indexOf(arm) % SM.PALETTE.length];
  const thresholds = (report.settings && report.settings.thresholds) || {};
  const name = (sid) => (thresholds[sid] && thresholds[sid].name) || sid;
  const skills = [...new Set(report.verdicts.map((v) => v.skill_id))];
  const sizes = [...new Set(report.verdicts.map((v) => v.size))];
  const find = (sid, size, arm) => report.verdicts.find((v) => v.skill_id === sid && v.size === size && v.arm === arm);
  const noLine = () => null;

  const pParent = document.getElementById("p-retained-charts");
  skills.forEach((sid) => {
    const xs = sizes.map((_, i) => i);
    const series = arms.map((arm) => sizes.map((size) => { const v = find(sid, size, arm); return v ? v.p_retained : null; }));
    const cis = arms.map((arm) => sizes.map((size) => { const v = find(sid, size, arm); return v ? v.ci95 : null; }));
    // Arms side by side at each size: offset each arm's x a little.
    const off = (a) => (arms.length > 1 ? (a - (arms.length - 1) / 2) * 0.12 : 0);
    const data = [xs.flatMap((x) => arms.map((_, a) => x + off(a)))];
    arms.forEach((arm, a) => data.push(data[0].map((x, j) => (j % arms.length === a ? series[a][Math.floor(j / arms.length)] : null))));
    const intervals = arms.map((arm, a) => data[0].map((x, j) => (j % arms.length === a ? cis[a][Math.floor(j / arms.length)] : null)));
    SM.chart(pParent, `${name(sid)}: P(retained)`, {
      scales: { x: { time: false, range: [-0.5, sizes.length - 0.5] }, y: { range: [0, 1] } },
      axes: [{ label: "model size", values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? sizes[t] || "" : "")) }, { label: "P(retained)" }],
      series: [{ label: "size", value: (u, x) => (x === null ? "" : sizes[Math.round(x)] || "") }].concat(arms.map((arm) => ({
        label: arm, stroke: color(arm), paths: noLine, points: { show: true, size: 9, fill: color(arm) },
        value: (u, v, s, i) => (v === null ? "–" : `${SM.fmt(v)} [${intervals[s - 1][i].map((c) => SM.fmt(c)).join(", ")}]`),
      }))),
      hooks: { draw: [SM.whiskers(intervals), SM.hline(0.5, "#999")] },
    }, data);
  });

  const stripParent = document.getElementById("strip-charts");
  skills.forEach((sid) => sizes.forEach((size) => {
    const points = []; // [x, arm index, accuracy, seed]
    let threshold = null;
    arms.forEach((arm, a) => {
      const v = find(sid, size, arm);
      if (!v) return;
      threshold = v.threshold;
      const seeds = report.runs.filter((r) => r.arm === arm && r.size === size).map((r) => r.seed);
      v.accuracies.forEach((acc, i) => {
        const jitter = v.accuracies.length > 1 ? (i / (v.accuracies.length - 1) - 0.5) * 0.4 : 0;
        points.push([a + jitter, a, acc, seeds[i]]);
      });
    });
    points.sort((p, q) => p[0] - q[0]);
    const data = [points.map((p) => p[0])];
    arms.forEach((arm, a) => data.push(points.map((p) => (p[1] === a ? p[2] : null))));
    SM.chart(stripParent, `${name(sid)} · ${size}: final readout per seed`, {
      scales: { x: { time: false, range: [-0.5, arms.length - 0.5] }, y: { range: [0, 1] } },
      axes: [{ label: "arm", values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? arms[t] || "" : "")) }, { label: "final held-out readout" }],
      series: [{ label: "seed", value: (u, x, s, i) => (i === null || !points[i] ? "" : `seed ${points[i][3]}`) }].concat(arms.map((arm) => ({
        label: arm, stroke: color(arm), paths: noLine, points: { show: true, size: 8, fill: color(arm) },
      }))),
      hooks: { draw: [SM.hline(threshold, "#444")] },
    }, data);
  }));

  const curveParent = document.getElementById("curve-charts");
  skills.forEach((sid) => sizes.forEach((size) => {
    const metric = (find(sid, size, arms[0]) || {}).metric || "exact";
    const field = metric === "forced_choice" ? "heldout_forced_choice" : "heldout_acc";
    const runs = report.runs.filter((r) => r.size === size && r.evals && r.evals.length);
    if (!runs.length) return;
    const steps = [...new Set(runs.flatMap((r) => r.evals.map((e) => e.step)))].sort((a, b) => a - b);
    const data = [steps];
    runs.forEach((r) => {
      const at = new Map(r.evals.map((e) => [e.step, ((e.skills || {})[sid] || {})[field]]));
      data.push(steps.map((s) => (at.has(s) && at.get(s) !== undefined ? at.get(s) : null)));
    });
    const threshold = (find(sid, size, arms[0]) || {}).threshold;
    SM.chart(curveParent, `${name(sid)} · ${size}: held-out ${metric} over training`, {
      scales: { x: { time: false }, y: { range: [0, 1] } },
      axes: [{ label: "step" }, { label: metric }],
      series: [{ label: "step" }].concat(runs.map((r) => ({
        label: `${r.arm} s${r.seed}`, stroke: color(r.arm), width: 1.2, spanGaps: true, points: { show: true, size: 4 },
      }))),
      hooks: { draw: [SM.hline(threshold, "#444")] },
    }, data);
  }));
})();
