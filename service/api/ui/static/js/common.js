/* Helpers shared by the /ui pages: the page's JSON (the API's answer, in a
   <script type="application/json"> block), sortable tables, and uPlot charts. */
"use strict";
window.SM = (function () {
  const PALETTE = ["#2f5fd0", "#d9822b", "#1a7f37", "#c62828", "#7b3fb5", "#00838f", "#8d6e63", "#5c6bc0"];

  function data(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(x, digits) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    if (Number.isInteger(x)) return String(x);
    return Math.abs(x) >= 100 ? x.toFixed(1) : Number(x.toPrecision(digits || 3)).toString();
  }

  /* Click a header to sort by that column (cells' data-value, numbers when they parse). */
  function sortable(table) {
    const heads = table.tHead.rows[0].cells;
    Array.from(heads).forEach((th, col) => {
      th.addEventListener("click", () => {
        const asc = th.getAttribute("aria-sort") !== "ascending";
        Array.from(heads).forEach((h) => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        const key = (row) => {
          const cell = row.cells[col];
          const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
          const num = raw === "" ? NaN : Number(raw);
          return Number.isNaN(num) ? raw.toLowerCase() : num;
        };
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          const cmp = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === "number" ? -1 : 1;
          return asc ? cmp : -cmp;
        });
        rows.forEach((r) => body.appendChild(r));
      });
    });
  }

  /* A titled box in `parent` holding a uPlot chart; returns the chart. */
  function chart(parent, title, opts, series) {
    const box = el("div", { class: "chart" });
    box.appendChild(el("h3", {}, title));
    parent.appendChild(box);
    const width = Math.max(320, Math.min(640, parent.clientWidth - 24));
    return new uPlot(Object.assign({ width: width, height: 240 }, opts), series, box);
  }

  /* A uPlot draw hook: vertical intervals [lo, hi] per series and x (null: none). */
  function whiskers(intervals) {
    return (u) => {
      const ctx = u.ctx;
      ctx.save();
      intervals.forEach((perX, s) => {
        if (!perX || !u.series[s + 1].show) return;
        ctx.strokeStyle = u.series[s + 1]._stroke || "#333";
        ctx.lineWidth = 2 * devicePixelRatio;
        perX.forEach((ci, i) => {
          if (!ci) return;
          const x = u.valToPos(u.data[0][i], "x", true);
          const lo = u.valToPos(ci[0], "y", true), hi = u.valToPos(ci[1], "y", true);
          const cap = 5 * devicePixelRatio;
          ctx.beginPath();
          ctx.moveTo(x, lo); ctx.lineTo(x, hi);
          ctx.moveTo(x - cap, lo); ctx.lineTo(x + cap, lo);
          ctx.moveTo(x - cap, hi); ctx.lineTo(x + cap, hi);
          ctx.stroke();
        });
      });
      ctx.restore();
    };
  }

  /* A uPlot draw hook: a dashed horizontal line at y = value. */
  function hline(value, color) {
    return (u) => {
      if (value === null || value === undefined) return;
      const ctx = u.ctx, y = u.valToPos(value, "y", true);
      ctx.save();
      ctx.strokeStyle = color || "#444";
      ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
      ctx.lineWidth = devicePixelRatio;
      ctx.beginPath();
      ctx.moveTo(u.bbox.left, y); ctx.lineTo(u.bbox.left + u.bbox.width, y);
      ctx.stroke();
      ctx.restore();
    };
  }

  document.querySelectorAll("table.sortable").forEach(sortable);
  return { PALETTE, data, el, fmt, sortable, chart, whiskers, hline };
})();
