/* Live job progress: the API's server-sent events (GET /ui/jobs/{id}/events, the same
   stream as /v1/jobs/{id}/events) update every unfinished job shown on the page. */
"use strict";
(function () {
  const MAX_STREAMS = 4; // a browser opens at most 6 connections to a host over HTTP/1.1
  const pending = Array.from(document.querySelectorAll("[data-live-job][data-job-final='no']"));
  const ids = [...new Set(pending.map((node) => node.dataset.liveJob))].slice(0, MAX_STREAMS);
  const detail = ["scan", "mixture", "verification"].includes(document.body.dataset.page);

  function update(job) {
    const sel = (attr) => document.querySelectorAll(`[${attr}="${CSS.escape(job.id)}"]`);
    sel("data-job-state").forEach((n) => { n.textContent = job.state; n.className = `state state-${job.state}`; });
    sel("data-job-progress").forEach((n) => { n.value = job.progress.fraction; });
    sel("data-job-message").forEach((n) => { n.textContent = job.progress.message; });
    sel("data-job-error").forEach((n) => { n.textContent = job.error || ""; });
    sel("data-job-duration").forEach((n) => {
      if (!job.started_at) return;
      const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
      n.textContent = SM.fmt((end - Date.parse(job.started_at)) / 1000, 3);
    });
    sel("data-live-job").forEach((n) => {
      n.dataset.jobFinal = ["succeeded", "failed", "cancelled"].includes(job.state) ? "yes" : "no";
    });
  }

  ids.forEach((id) => {
    const source = new EventSource(`/ui/jobs/${encodeURIComponent(id)}/events`);
    source.addEventListener("progress", (e) => update(JSON.parse(e.data)));
    source.addEventListener("end", (e) => {
      source.close();
      const job = JSON.parse(e.data);
      update(job);
      // A resource's page shows its report once the job is done: load it.
      if (detail && job.state === "succeeded") window.location.reload();
    });
    source.onerror = () => source.close();
  });
})();
