/* Mixture page: composition over batches (planned and placed instances per batch), read
   from /ui/mixtures/{id}/composition.json (the builder's composition.jsonl). */
"use strict";
(function () {
  const mixture = SM.data("mixture-data");
  const parent = document.getElementById("composition-charts");
  if (!mixture || !parent) return;
  fetch(parent.dataset.src, { credentials: "same-origin" })
    .then((r) => { if (!r.ok) throw new Error(`composition: HTTP ${r.status}`); return r.json(); })
    .then((comp) => {
      const ids = Object.keys(comp.skills);
      if (!ids.length) { parent.appendChild(SM.el("p", { class: "muted" }, "No dosed skill: a baseline mixture.")); return; }
      const names = (mixture.audit && mixture.audit.skills) || {};
      ids.forEach((sid) => {
        const s = comp.skills[sid];
        const per = comp.bin_batches > 1 ? ` (mean over ${comp.bin_batches} batches a point)` : "";
        const stepped = uPlot.paths.stepped({ align: 1 });
        SM.chart(parent, `${(names[sid] && names[sid].name) || sid}: instances per batch${per}`, {
          scales: { x: { time: false } },
          axes: [{ label: "batch (training order)" }, { label: "instances / batch" }],
          series: [
            { label: "batch" },
            { label: "planned", stroke: SM.PALETTE[1], width: 1.5, paths: stepped, points: { show: false } },
            { label: "placed", stroke: SM.PALETTE[0], fill: SM.PALETTE[0] + "44", paths: stepped, points: { show: false } },
          ],
        }, [comp.batch, s.planned, s.placed]);
      });
    })
    .catch((err) => parent.appendChild(SM.el("p", { class: "error" }, String(err))));
})();
